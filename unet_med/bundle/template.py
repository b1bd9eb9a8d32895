"""The one template every unet_med bundle is made from: a task description in, the bundle's configs out.

:func:`render` turns a task description (:mod:`unet_med.bundle.task`) into the files of ``configs/``:

- ``train.json``: stands alone, with the MONAI model zoo's ids (``bundle_root``, ``device``, ``dataset_dir``,
  ``network_def``, ``network``, ``train#trainer``, ``validate#evaluator``, ...) and the standard workflow properties
  (``ConfigWorkflow(workflow_type="train").check_properties()`` finds nothing missing).
- ``inference.json``: stands alone too (``python -m monai.bundle run --config_file configs/inference.json``), with
  the zoo's inference ids; its ``inferer`` and ``postprocessing`` are the components ``unet-med predict`` runs.
- ``evaluate.json`` and ``multi_gpu_train.json``: overlays on ``train.json``, as in the zoo.
- ``metadata.json`` (with exact package pins) and ``logging.conf``.

Every ``$`` expression in a bundle comes from here, and all of them are one-line plumbing; a bundle differs from
another only through its task description. ``unet-med bundle build DIR`` rewrites a bundle's configs from its
``configs/task.json`` and :func:`unet_med.bundle.build.check_bundle` tells when a committed config has drifted.

Example::

    files = render(load_task("bundles/unet"))
    sorted(files)  # ['evaluate.json', 'inference.json', 'logging.conf', 'metadata.json', ...]
"""

from __future__ import annotations

import json
from typing import Any

from unet_med import __version__
from unet_med.bundle.task import validate_task

__all__ = ["CONFIG_FILES", "LOGGING_CONF", "PINS", "SCHEMA_URL", "config_text", "render", "with_defaults"]

#: The MONAI bundle metadata schema the metadata follows.
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
#: Exact versions the bundles are made and tested with (the metadata's pins).
PINS: dict[str, Any] = {
    "monai": "1.6.1",
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "packages": {
        "unet-med": __version__,
        "nibabel": "5.4.2",
        "pytorch-ignite": "0.5.5",
        "tensorboard": "2.21.0",
        "matplotlib": "3.11.2",
        "SimpleITK": "2.5.7",
        "scipy": "1.17.1",
        "scikit-image": "0.26.0",
        "pillow": "13.0.0",
        "tifffile": "2026.3.3",
    },
}
#: The files of ``configs/`` that the template writes.
CONFIG_FILES = (
    "train.json",
    "inference.json",
    "evaluate.json",
    "multi_gpu_train.json",
    "metadata.json",
    "logging.conf",
)

_RANK0_OFF = "$not unet_med.utils.is_rank_zero()"
_DEVICE = "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')"
_METADATA_MODALITY = {"mri": "MR", "ct": "CT"}

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
    task["network"] = {"norm": "instance", "pool_sizes": None, "dropout": 0.0, **task["network"]}
    task["training"] = {
        "max_epochs": 24,
        "val_interval": 4,
        "batch_size": 2,
        "num_samples": 2,
        "learning_rate": 0.003,
        "amp": False,
        "loss": "dice_ce",
        "augmentation": "microscopy" if micro else "volume",
        "demo": None,
        "datalist": False,
        "num_folds": 5,
        "compile": True,
        "channels_last": True,
        "lr_schedule": "cosine",
        "warmup_epochs": 0,
        "val_overlap": 0.25,
        "val_sw_batch_size": 8,
        **task.get("training", {}),
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


# -- pieces shared by the configs ---------------------------------------------------------------------------------


def _network_def(t: dict[str, Any]) -> dict[str, Any]:
    net = t["network"]
    spec: dict[str, Any] = {
        "_target_": "unet_med.networks.UNet",
        "spatial_dims": "@spatial_dims",
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
        "features": "@features",
        "norm": [net["norm"], {"affine": True}] if net["norm"] == "instance" else net["norm"],
    }
    if net["pool_sizes"] is not None:
        spec["pool_sizes"] = net["pool_sizes"]
    if net["dropout"]:
        spec["dropout"] = net["dropout"]
    return spec


def _preprocessing(t: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    pre = t["preprocessing"]
    spec: dict[str, Any] = {
        "_target_": "unet_med.transforms.preprocessing",
        "keys": keys,
        "modality": "@modality",
        "pixdim": "@pixdim",
        "orientation": pre["orientation"],
    }
    if t["modality"] == "mri":
        spec["mri_foreground"] = pre["mri_foreground"]
    if t["modality"] == "ct":
        spec["ct_window"] = "@ct_window"
    return spec


def _task_ids(t: dict[str, Any]) -> dict[str, Any]:
    """The ids both standalone configs define (each can be overridden on the command line): the task's shape,
    its preprocessing settings and the network."""
    ids: dict[str, Any] = {
        "spatial_dims": t["spatial_dims"],
        "in_channels": len(t["channels"]),
        "num_classes": len(t["classes"]),
        "class_names": t["classes"],
        "modality": t["modality"],
        "pixdim": t["preprocessing"]["pixdim"],
    }
    if t["modality"] == "ct":
        ids["ct_window"] = t["preprocessing"]["ct_window"]
    ids["patch_size"] = t["patch_size"]
    ids["features"] = t["network"]["features"]
    ids["network_def"] = _network_def(t)
    return ids


def _label_transforms(t: dict[str, Any]) -> list[dict[str, Any]]:
    labels = t["labels"]
    if labels["kind"] == "values":
        return [
            {
                "_target_": "MapLabelValued",
                "keys": "label",
                "orig_labels": labels["values"],
                "target_labels": labels["map_to"],
            }
        ]
    if labels["kind"] == "instances":
        return [
            {
                "_target_": "unet_med.transforms.InstancesToClassesd",
                "keys": "label",
                "boundary_width": labels.get("boundary_width", 2),
            }
        ]
    return []


def _handler(target: str, **kwargs: Any) -> dict[str, Any]:
    return {"_target_": target, **kwargs}


# -- train.json ---------------------------------------------------------------------------------------------------


def _datalist(t: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "_target_": "unet_med.data.prepare_datalist",
        "dataset_dir": "@dataset_dir",
        "datalist_file": "@datalist_file",
        "num_classes": "@num_classes",
        "in_channels": "@in_channels",
        "spatial_dims": "@spatial_dims",
        "cache_dir": "@cache_dir",
        "seed": "@seed",
        "fold": "@fold",
        "num_folds": "@num_folds",
        "save_to": "$@output_dir + '/datalist.json'",
    }
    if t["training"]["demo"]:
        spec["demo"] = "@demo"
    else:
        spec["allow_demo"] = False
    labels = t["labels"]
    if labels["kind"] == "values":
        spec["label_values"] = labels["values"]
    elif labels["kind"] == "instances":
        spec["label_values"] = "instances"
    return spec


def _validation_postprocessing(t: dict[str, Any]) -> list[dict[str, Any]]:
    report = t["evaluation"]["report"]
    steps: list[dict[str, Any]] = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]
    if report == "regions":
        regions = [r["labels"] for r in t["evaluation"]["regions"]]
        steps += [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "unet_med.transforms.LabelToRegionsd", "keys": ["pred", "label"], "regions": regions},
        ]
        return steps
    steps += [
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True, "to_onehot": "@num_classes"},
        {"_target_": "AsDiscreted", "keys": "label", "to_onehot": "@num_classes"},
    ]
    keep = t["postprocessing"]["keep_largest_component"]
    if keep:
        steps.append(
            {"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": keep, "is_onehot": True}
        )
    return steps


def _loss(t: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True}
    if t["training"]["loss"] == "ce":
        spec.update({"lambda_dice": 0.0, "lambda_ce": 1.0})
    return spec


def _augmentation(t: dict[str, Any]) -> dict[str, Any]:
    if t["training"]["augmentation"] == "microscopy":
        target = "unet_med.transforms.microscopy_augmentation"
    else:
        target = "unet_med.transforms.train_augmentation"
    return {
        "_target_": target,
        "patch_size": "@patch_size",
        "num_classes": "@num_classes",
        "num_samples": "@num_samples",
    }


def _lr_schedule(tr: dict[str, Any]) -> dict[str, Any]:
    """The learning-rate schedule: cosine decay per epoch, or per iteration after a linear warm-up."""
    if tr["lr_schedule"] == "cosine":
        return {
            "lr_scheduler": {
                "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
                "optimizer": "@optimizer",
                "T_max": "@max_epochs",
                "eta_min": 1e-05,
            }
        }
    return {
        "warmup_epochs": tr["warmup_epochs"],
        "lr_scheduler": {
            "_target_": "monai.optimizers.WarmupCosineSchedule",
            "optimizer": "@optimizer",
            "warmup_steps": "$int(@warmup_epochs * len(@train#dataloader))",
            "t_total": "$@max_epochs * len(@train#dataloader)",
            "end_lr": 1e-05,
            "warmup_multiplier": 0.01,
        },
    }


def train_config(t: dict[str, Any]) -> dict[str, Any]:
    """``train.json`` for a task with defaults filled in (:func:`with_defaults`)."""
    tr = t["training"]
    labels = _label_transforms(t)
    train_chain = "$@preprocessing.transforms + @label_transforms.transforms + @train#augmentation.transforms"
    val_chain = "$@preprocessing.transforms + @label_transforms.transforms"
    metric_from = "$monai.handlers.from_engine(['pred', 'label'])"
    loss_from = "$monai.handlers.from_engine(['loss'], first=True)"
    return {
        "imports": [
            "$import operator",
            "$import torch",
            "$import monai",
            "$import unet_med",
        ],
        "bundle_root": "$unet_med.bundle.locate_bundle_root()",
        "output_dir": "$unet_med.bundle.run_dir(@bundle_root, @fold)",
        "ckpt_dir": "$unet_med.bundle.weights_dir(@bundle_root, @fold)",
        "cache_dir": "$@bundle_root + '/.cache'",
        "dataset_dir": None,
        "datalist_file": "$@bundle_root + '/configs/datalist.json'" if tr["datalist"] else None,
        **({"demo": tr["demo"]} if tr["demo"] else {}),
        "device": _DEVICE,
        "amp": tr["amp"],
        "cuda_amp": "$@amp and torch.device(@device).type == 'cuda'",
        "cpu_amp": "$@amp and torch.device(@device).type == 'cpu'",
        "compile": tr["compile"],
        "channels_last": tr["channels_last"],
        "seed": 0,
        "fold": None,
        "num_folds": tr["num_folds"],
        "resume": False,
        "max_epochs": tr["max_epochs"],
        "val_interval": tr["val_interval"],
        "batch_size": tr["batch_size"],
        "num_samples": tr["num_samples"],
        "learning_rate": tr["learning_rate"],
        "early_stop_patience": 1000,
        "num_workers": 0,
        **_task_ids(t),
        "network": "$@network_def.to(@device)",
        "preprocessing": _preprocessing(t, ["image", "label"]),
        "label_transforms": {"_target_": "Compose", "transforms": labels},
        "datalist": _datalist(t),
        "loss": _loss(t),
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "params": "$@network.parameters()",
            "lr": "@learning_rate",
            "weight_decay": 1e-05,
        },
        **_lr_schedule(tr),
        "early_stop": {
            "_target_": "EarlyStopHandler",
            "trainer": None,
            "patience": "@early_stop_patience",
            "score_function": "$monai.handlers.stopping_fn_from_metric('val_mean_dice')",
            "epoch_level": True,
        },
        "train": {
            "augmentation": _augmentation(t),
            "preprocessing": {"_target_": "Compose", "transforms": train_chain},
            "dataset": {
                "_target_": "CacheDataset",
                "data": "$@datalist['training']",
                "transform": "@train#preprocessing",
                "cache_rate": 1.0,
                "num_workers": 1,
                "progress": False,
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@train#dataset",
                "batch_size": "@batch_size",
                "shuffle": True,
                "num_workers": "@num_workers",
                "drop_last": "@compile",
            },
            "inferer": {
                "_target_": "unet_med.inference.AutocastInferer",
                "inferer": {
                    "_target_": "unet_med.engines.CompiledInferer",
                    "inferer": {"_target_": "SimpleInferer"},
                    "enabled": "@compile",
                    "channels_last": "@channels_last",
                },
                "enabled": "@cpu_amp",
            },
            "key_metric": {"train_loss": {"_target_": "ignite.metrics.Average", "output_transform": loss_from}},
            "handlers": [
                _handler(
                    "LrScheduleHandler",
                    lr_scheduler="@lr_scheduler",
                    print_lr=False,
                    epoch_level=tr["lr_schedule"] == "cosine",
                ),
                _handler(
                    "ValidationHandler", validator="@validate#evaluator", epoch_level=True, interval="@val_interval"
                ),
                _handler(
                    "unet_med.engines.ResumableCheckpoint",
                    save_dir="@ckpt_dir",
                    save_dict={"model": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"},
                    evaluator="@validate#evaluator",
                    resume="@resume",
                ),
                _handler("StatsHandler", _disabled_=_RANK0_OFF, iteration_log=False),
                _handler(
                    "TensorBoardStatsHandler",
                    _disabled_=_RANK0_OFF,
                    log_dir="$@output_dir + '/tensorboard'",
                    tag_name="train_loss_iteration",
                    output_transform=loss_from,
                ),
                _handler("ignite.handlers.ProgressBar", _disabled_=_RANK0_OFF, persist=False),
            ],
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": "@max_epochs",
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": "@train#inferer",
                "amp": "@cuda_amp",
                "key_train_metric": "@train#key_metric",
                "metric_cmp_fn": "$operator.lt",
                "train_handlers": "@train#handlers",
            },
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": val_chain},
            "dataset": {
                "_target_": "CacheDataset",
                "data": "$@datalist['validation']",
                "transform": "@validate#preprocessing",
                "cache_rate": 1.0,
                "num_workers": 1,
                "progress": False,
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@validate#dataset",
                "batch_size": 1,
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "inferer": {
                "_target_": "unet_med.inference.AutocastInferer",
                "inferer": {
                    "_target_": "SlidingWindowInferer",
                    "roi_size": "@patch_size",
                    "sw_batch_size": tr["val_sw_batch_size"],
                    "overlap": tr["val_overlap"],
                    "mode": "gaussian",
                },
                "enabled": "@cpu_amp",
            },
            "postprocessing": {"_target_": "Compose", "transforms": _validation_postprocessing(t)},
            "key_metric": {
                "val_mean_dice": {
                    "_target_": "MeanDice",
                    "include_background": t["evaluation"]["report"] == "regions",
                    "output_transform": metric_from,
                }
            },
            "handlers": [
                _handler("StatsHandler", _disabled_=_RANK0_OFF, iteration_log=False),
                _handler(
                    "TensorBoardStatsHandler",
                    _disabled_=_RANK0_OFF,
                    log_dir="$@output_dir + '/tensorboard'",
                    iteration_log=False,
                ),
                _handler(
                    "unet_med.engines.OverlayImageHandler",
                    _disabled_=_RANK0_OFF,
                    log_dir="$@output_dir + '/tensorboard'",
                ),
                _handler("unet_med.engines.BestModelSaver", save_dir="@ckpt_dir", network="@network"),
                "@early_stop",
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric",
                "amp": "@cuda_amp",
                "val_handlers": "@validate#handlers",
            },
        },
        "initialize": ["$monai.utils.set_determinism(seed=@seed)", "$@datalist"],
        "run": ["$@early_stop.set_trainer(@train#trainer)", "$@train#trainer.run()"],
        "training": "@run",
    }


# -- inference.json -----------------------------------------------------------------------------------------------


def inference_config(t: dict[str, Any]) -> dict[str, Any]:
    """``inference.json`` for a task with defaults filled in: standalone, the ``unet-med predict`` components."""
    post = t["postprocessing"]
    labels: dict[str, Any] = {"_target_": "unet_med.inference.ScoresToLabelsd", "keys": "pred"}
    if post["keep_largest_component"]:
        labels["keep_largest"] = post["keep_largest_component"]
    if post["instances_min_size"] is not None:
        labels["instances_min_size"] = post["instances_min_size"]
    members = t["inference"]["ensemble"]
    labels["probabilities"] = "@mirror" if members == 1 else True  # an ensemble blends probabilities
    loader = {
        "_target_": "CheckpointLoader",
        "load_path": "@model_file",
        "load_dict": {"model": "@network"},
        "map_location": "@device",
    }
    ensemble: dict[str, Any] = {}
    network = "$@network_def.to(@device)"
    if members > 1:
        ensemble = {"ensemble": members}
        network = "$unet_med.inference.load_ensemble(@network_def, @model_file, @ensemble, @device)"
    return {
        "imports": ["$import torch", "$import monai", "$import unet_med"],
        "bundle_root": "$unet_med.bundle.locate_bundle_root()",
        "ckpt_dir": "$@bundle_root + '/models'",
        "model_file": "$@ckpt_dir + '/model.pt'",
        **ensemble,
        "output_dir": "$@bundle_root + '/runs/predictions'",
        "dataset_dir": None,
        "input": None,
        "device": _DEVICE,
        "precision": "auto",
        "mirror": False,
        "overlap": 0.5,
        "sw_batch_size": 4,
        "num_workers": 0,
        **_task_ids(t),
        "network": network,
        "preprocessing": _preprocessing(t, ["image"]),
        "datalist": {
            "_target_": "unet_med.data.inference_datalist",
            "input": "@input",
            "dataset_dir": "@dataset_dir",
            "num_channels": "@in_channels",
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": "@num_workers",
        },
        "inferer": {
            "_target_": "unet_med.inference.ScanInferer",
            "roi_size": "@patch_size",
            "overlap": "@overlap",
            "sw_batch_size": "@sw_batch_size",
            "precision": "@precision",
            "mirror": "@mirror",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                labels,
                {"_target_": "unet_med.inference.InvertToInputd", "keys": "pred", "transform": "@preprocessing"},
                {"_target_": "unet_med.inference.SaveImageLikeInputd", "keys": "pred", "output_dir": "@output_dir"},
            ],
        },
        "handlers": [
            *([loader] if members == 1 else []),  # an ensemble is loaded when it is built
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$unet_med.data.require_cases(@datalist)", "$@evaluator.run()"],
        "inferring": "@run",
    }


# -- overlays on train.json ---------------------------------------------------------------------------------------


def evaluate_config(t: dict[str, Any]) -> dict[str, Any]:
    """``evaluate.json``: the trained weights on the validation split, with per-case reports."""
    ev = t["evaluation"]
    report = ev["report"]
    members = t["inference"]["ensemble"]
    trained = "$unet_med.engines.load_network(@network_def, @model_file, @device)"
    if members > 1:
        trained = "$unet_med.inference.load_ensemble(@network_def, @model_file, @ensemble, @device)"
    config: dict[str, Any] = {
        "model_file": "$@ckpt_dir + '/model.pt'",
        **({"ensemble": members} if members > 1 else {}),
        "mirror": False,
        "trained_network": trained,
        "network": "$unet_med.inference.mirrored(@trained_network, @mirror, @spatial_dims)",
        "eval_dir": "$@output_dir + '/eval'",
        "datalist#save_to": None,
    }
    if report in ("classes", "regions"):
        names = [r["name"] for r in ev["regions"]] if report == "regions" else "@class_names"
        config["validate#handlers"] = [
            _handler("StatsHandler", iteration_log=False),
            _handler(
                "unet_med.engines.CaseMetricsReport",
                output_dir="@eval_dir",
                class_names=names,
                include_background=report == "regions",
                surface_tolerance_mm=ev["surface_tolerance_mm"],
            ),
            _handler("ignite.handlers.ProgressBar", persist=False),
        ]
    else:
        softmax = "$not @mirror" if members == 1 else False  # mirroring and ensembles give probabilities
        config["validate#postprocessing"] = {"_target_": "Activationsd", "keys": "pred", "softmax": softmax}
        config["validate#key_metric"] = None
        microscopy: dict[str, Any] = {"output_dir": "@eval_dir", "task": report}
        if report == "membranes":
            microscopy["membrane_class"] = 1
        else:
            microscopy["min_size"] = t["postprocessing"]["instances_min_size"]
            config["eval_label_transforms"] = {
                "_target_": "Compose",
                "transforms": [{"_target_": "CopyItemsd", "keys": "label", "names": "instances"}, "@label_transforms"],
            }
            config["validate#preprocessing#transforms"] = (
                "$@preprocessing.transforms + @eval_label_transforms.transforms"
            )
        microscopy["num_figures"] = ev["num_figures"]
        config["validate#handlers"] = [
            _handler("unet_med.engines.MicroscopyReport", **microscopy),
            _handler("ignite.handlers.ProgressBar", persist=False),
        ]
    config["run"] = ["$@validate#evaluator.run()"]
    config["evaluating"] = "@run"
    return config


def multi_gpu_config() -> dict[str, Any]:
    """``multi_gpu_train.json``: ``torchrun`` data-parallel training (NCCL on GPUs, gloo on CPUs)."""
    return {
        "+imports": ["$import os", "$import torch.distributed as dist"],
        "device": "$torch.device('cuda:' + os.environ['LOCAL_RANK']) if torch.cuda.is_available() "
        "else torch.device('cpu')",
        "network": "$torch.nn.parallel.DistributedDataParallel(@network_def.to(@device), "
        "device_ids=[@device] if torch.cuda.is_available() else None)",
        "train#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@train#dataset",
            "even_divisible": True,
            "shuffle": True,
        },
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "validate#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@validate#dataset",
            "even_divisible": False,
            "shuffle": False,
        },
        "validate#dataloader#sampler": "@validate#sampler",
        "initialize": [
            "$dist.is_initialized() or dist.init_process_group(backend='nccl' if torch.cuda.is_available() "
            "else 'gloo')",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            "$monai.utils.set_determinism(seed=@seed)",
            "$@datalist",
        ],
        "finalize": ["$dist.is_initialized() and dist.destroy_process_group()"],
    }


# -- metadata.json ------------------------------------------------------------------------------------------------


def _divisors(t: dict[str, Any]) -> list[int]:
    pools = t["network"]["pool_sizes"]
    dims = t["spatial_dims"]
    if pools is None:
        return [2 ** (len(t["network"]["features"]) - 1)] * dims
    out = [1] * dims
    for stage in pools:
        out = [o * p for o, p in zip(out, stage)]
    return out


def metadata(t: dict[str, Any]) -> dict[str, Any]:
    """``metadata.json``: the card texts from the task, the network's data format, and exact pins."""
    card = t["card"]
    micro = t["modality"] == "microscopy"
    # any multiple of twice the pooling factor: the bottleneck keeps >= 2 voxels per axis, which instance
    # norm needs (MONAI's verify_net_in_out tries n=1)
    shape = [f"{2 * d}*n" for d in _divisors(t)]
    imaging = card.get("imaging_modality", _METADATA_MODALITY.get(t["modality"], "microscopy"))

    def fmt(num_channels: int, channel_def: dict[str, str], segmentation: bool) -> dict[str, Any]:
        return {
            "type": "image",
            "format": "segmentation" if segmentation else "magnitude",
            **({} if segmentation else {"modality": imaging}),
            "num_channels": num_channels,
            "spatial_shape": shape,
            "dtype": "float32",
            "value_range": [0, 1] if micro and not segmentation else [],
            "is_patch_data": True,
            "channel_def": channel_def,
        }

    return {
        "schema": SCHEMA_URL,
        "version": card["version"],
        "changelog": card["changelog"],
        "monai_version": PINS["monai"],
        "pytorch_version": PINS["torch"],
        "numpy_version": PINS["numpy"],
        "required_packages_version": dict(PINS["packages"]),
        "supported_apps": {},
        "name": card["name"],
        "task": card["task"],
        "description": card["description"],
        "authors": card.get("authors", "unet_med developers"),
        "copyright": card.get("copyright", "Copyright (c) unet_med developers"),
        "data_source": card.get("data_source", ""),
        "data_type": "png" if micro else "nibabel",
        "image_classes": card.get("image_classes", ""),
        "label_classes": card.get("label_classes", ""),
        "pred_classes": card.get("pred_classes", ""),
        "eval_metrics": card.get("eval_metrics", {}),
        "intended_use": card.get("intended_use", "Research and template; not for clinical use."),
        "references": card.get("references", []),
        "network_data_format": {
            "inputs": {"image": fmt(len(t["channels"]), {str(i): c for i, c in enumerate(t["channels"])}, False)},
            "outputs": {"pred": fmt(len(t["classes"]), {str(i): c for i, c in enumerate(t["classes"])}, True)},
        },
    }


# -- all of it ----------------------------------------------------------------------------------------------------


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
