"""The one template every unet_med bundle is made from: a task description in, the bundle's configs out.

:func:`render` turns a task description (:mod:`unet_med.bundle.task`) into the files of ``configs/``:

- ``train.json``: stands alone, with the MONAI model zoo's ids (``bundle_root``, ``device``, ``dataset_dir``,
  ``network_def``, ``network``, ``train#trainer``, ``validate#evaluator``, ...) and the standard workflow properties
  (``ConfigWorkflow(workflow_type="train").check_properties()`` finds nothing missing).
- ``inference.json``: stands alone too (``python -m monai.bundle run --config_file configs/inference.json``), with
  the zoo's inference ids; its ``inferer`` and ``postprocessing`` are the components ``unet-med predict`` runs.
- ``evaluate.json`` and ``multi_gpu_train.json``: overlays on ``train.json``, as in the zoo.
- ``metadata.json`` (with exact package pins) and ``logging.conf``.

The configs themselves are written in :mod:`~unet_med.bundle.template_train` (``train.json`` and its overlays),
:mod:`~unet_med.bundle.template_infer` (``inference.json``, ``metadata.json``) and
:mod:`~unet_med.bundle.template_parts` (what they share). Every ``$`` expression in a bundle comes from these, and
all of them are one-line plumbing; a bundle differs from another only through its task description.
``unet-med bundle build DIR`` rewrites a bundle's configs from its ``configs/task.json`` and
:func:`unet_med.bundle.build.check_bundle` tells when a committed config has drifted.

Example::

    files = render(load_task("bundles/unet"))
    sorted(files)  # ['evaluate.json', 'inference.json', 'logging.conf', 'metadata.json', ...]
"""

from __future__ import annotations

import json
from typing import Any

from unet_med.bundle.task import default_augmentation, validate_task
from unet_med.bundle.template_infer import PINS, SCHEMA_URL, inference_config, metadata
from unet_med.bundle.template_train import evaluate_config, multi_gpu_config, train_config

__all__ = [
    "CONFIG_FILES",
    "LOGGING_CONF",
    "PINS",
    "SCHEMA_URL",
    "config_text",
    "evaluate_config",
    "inference_config",
    "metadata",
    "multi_gpu_config",
    "render",
    "train_config",
    "with_defaults",
]

#: The files of ``configs/`` that the template writes.
CONFIG_FILES = (
    "train.json",
    "inference.json",
    "evaluate.json",
    "multi_gpu_train.json",
    "metadata.json",
    "logging.conf",
)

LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def with_defaults(task: dict[str, Any]) -> dict[str, Any]:
    """The task with every optional setting filled in (validated first).

    Training speed settings (``training``), measured on a 2-core CPU (``docs/benchmarks.md``, issue #14):
    ``compile`` (true) runs the training step through ``torch.compile`` and ``channels_last`` (true) stores it
    channels-last (:class:`unet_med.engines.CompiledInferer`; 1.33x the eager bf16 step of the hippocampus
    network, ~30-55 s of compilation on the first step); ``lr_schedule`` ``"cosine"`` (per epoch) or
    ``"warmup_cosine"`` (``warmup_epochs`` of linear warm-up, then cosine, per iteration); ``val_overlap`` (0.25)
    and ``val_sw_batch_size`` (8) set the sliding window of the validation during training only (inference keeps
    overlap 0.5).

    ``loss``: ``"dice_ce"`` (default), ``"ce"``, or ``"border_weighted_ce"`` (2D microscopy: the U-Net paper's
    pixel-weighted cross-entropy, :func:`unet_med.transforms.border_weight_map`; ``border_weights`` names the
    ``border_class`` and may set ``w0`` (10), ``sigma`` (5 pixels) and ``keep_class_total`` (true)).
    """
    task = validate_task(task)
    micro = task["modality"] == "microscopy"
    instances = task.get("labels", {}).get("kind") == "instances"
    task["preprocessing"] = {
        "pixdim": None,
        "orientation": None if micro else "RAS",
        "mri_foreground": "nonzero",
        "ct_window": [-1000.0, 1000.0],
        **task.get("preprocessing", {}),
    }
    task["labels"] = {"kind": "classes", **task.get("labels", {})}
    task["network"] = {
        "norm": "instance",
        "pool_sizes": None,
        "dropout": 0.0,
        "deep_supervision": False,
        **task["network"],
    }
    task["training"] = {
        "max_epochs": 24,
        "val_interval": 4,
        "batch_size": 2,
        "num_samples": 2,
        "learning_rate": 0.003,
        "amp": False,
        "loss": "dice_ce",
        "border_weights": None,
        "augmentation": default_augmentation(task),
        "demo": None,
        "datalist": False,
        "num_folds": 5,
        "fold_blocks": False,
        "compile": True,
        "channels_last": True,
        "lr_schedule": "cosine",
        "warmup_epochs": 0,
        "val_overlap": 0.25,
        "val_sw_batch_size": 8,
        **task.get("training", {}),
    }
    if task["training"]["border_weights"] is not None:
        task["training"]["border_weights"] = {
            "w0": 10.0,
            "sigma": 5.0,
            "keep_class_total": True,
            **task["training"]["border_weights"],
        }
    task["inference"] = {"ensemble": 1, **task.get("inference", {})}
    task["postprocessing"] = {
        "keep_largest_component": [],
        "instances_min_size": 8 if instances else None,
        **task.get("postprocessing", {}),
    }
    task["evaluation"] = {
        "report": "instances" if instances else "classes",
        "regions": [],
        "surface_tolerance_mm": 2.0,
        "num_figures": 5,
        **task.get("evaluation", {}),
    }
    return task


def config_text(content: dict[str, Any] | str) -> str:
    """The exact text a config is written as (4-space JSON, key order kept, a final newline)."""
    if isinstance(content, str):
        return content
    return json.dumps(content, indent=4, ensure_ascii=False) + "\n"


def render(task: dict[str, Any]) -> dict[str, str]:
    """Every file of ``configs/`` the template makes from ``task``, as ``{file name: exact text}``.

    Raises:
        unet_med.bundle.task.TaskError: ``task`` is not a valid task description.
    """
    t = with_defaults(task)
    files: dict[str, dict[str, Any] | str] = {
        "train.json": train_config(t),
        "inference.json": inference_config(t),
        "evaluate.json": evaluate_config(t),
        "multi_gpu_train.json": multi_gpu_config(),
        "metadata.json": metadata(t),
        "logging.conf": LOGGING_CONF,
    }
    return {name: config_text(content) for name, content in files.items()}
