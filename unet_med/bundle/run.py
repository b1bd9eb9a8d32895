"""Running a bundle's MONAI workflow behind the recognition gate (``unet-med bundle run``).

``python -m monai.bundle run`` evaluates whatever a config says, so it is for bundles a site made or has verified
and not changed since. :func:`run_bundle` is the way to run a received bundle: it recognises the bundle
(:func:`unet_med.bundle.recognize.require_recognized`) and builds MONAI's ``ConfigWorkflow`` from the exact bytes
that were checked (configs, metadata and weights), so a file edited after ``verify`` is not what runs. Logging is
configured from the template's own ``logging.conf`` text, never by ``fileConfig`` on the bundle's file.

Example::

    run_bundle("received/hippocampus_mri", "inferring", {"input": "scans/", "output_dir": "masks/"})
    run_bundle("received/hippocampus_mri", "training", {"dataset_dir": "/data/Task04_Hippocampus"})
"""

from __future__ import annotations

import io
import json
import logging.config
import os
import tempfile
from pathlib import Path
from typing import Any

from unet_med.bundle.recognize import require_recognized
from unet_med.bundle.template import LOGGING_CONF
from unet_med.utils.quiet import drop_log_records

__all__ = ["WORKFLOWS", "run_bundle"]

#: Workflow -> (config files merged in order, MONAI workflow type, whether it loads ``models/model.pt`` and, for a
#: fold ensemble, the other members beside it).
WORKFLOWS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "inferring": (("inference.json",), "infer", True),
    "evaluating": (("train.json", "evaluate.json"), "train", True),
    "training": (("train.json",), "train", False),
}


def _merged(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Configs merged as MONAI merges several ``--config_file`` (``#`` paths, ``+`` appends)."""
    from monai.bundle import ConfigParser
    from monai.bundle.utils import merge_kv

    parser = ConfigParser(config={})
    for config in configs:
        for key, value in config.items():
            merge_kv(parser, key, value)
    return parser.get()


def run_bundle(
    bundle_dir: str | os.PathLike,
    workflow: str,
    overrides: dict[str, Any] | None = None,
    trust_bundle_code: bool = False,
) -> Any:
    """Recognises the bundle, then runs its ``workflow`` (``inferring``, ``evaluating`` or ``training``).

    Args:
        bundle_dir: the bundle folder.
        workflow: one of :data:`WORKFLOWS`.
        overrides: config ids to set, as on MONAI's command line (``{"input": "scan.nii.gz"}``).
        trust_bundle_code: run a bundle that is not recognised, its configs as they are on disk.

    Returns:
        What the workflow's ``run`` returned.

    Raises:
        unet_med.bundle.manifest.BundleError: the bundle is not recognised (and not trusted).
        ValueError: an unknown workflow.
        unet_med.inference.memory_plan.MemoryPlanError: ``inferring`` a case or with weights that do not fit the
            memory available (:func:`~unet_med.inference.memory_plan.plan_bundle_cases`).
    """
    from monai.bundle import ConfigWorkflow

    if workflow not in WORKFLOWS:
        raise ValueError(f"workflow must be one of {sorted(WORKFLOWS)}, got {workflow!r}")
    files, kind, needs_weights = WORKFLOWS[workflow]
    root = Path(bundle_dir).resolve()
    overrides = dict(overrides or {})
    recognised = require_recognized(root, trust_bundle_code=trust_bundle_code, weights=needs_weights)
    if workflow == "inferring" and "input" in overrides:  # weights and cases planned before anything is built
        from unet_med.inference.cases import find_cases
        from unet_med.inference.memory_plan import plan_bundle_cases

        plan_bundle_cases(root, find_cases(overrides["input"]))
    paths = [str(root / "configs" / f) for f in files]
    quiet = drop_log_records("monai.bundle.workflows", "Logging file is set to False")  # on purpose: see above
    with tempfile.TemporaryDirectory(prefix="unet-med-run-") as private:
        with quiet:
            wf = ConfigWorkflow(
                config_file=paths,
                meta_file=str(root / "configs" / "metadata.json"),
                logging_file=False,
                workflow_type=kind,
                run_id=workflow,
                **overrides,
            )
        if recognised.ok:  # the checked bytes, not what the files hold now
            wf.parser.read_config(_merged([recognised.config(f) for f in files]))
            wf.parser.read_meta(json.loads(recognised.files["configs/metadata.json"]))
            wf.parser["bundle_root"] = str(root)
            if needs_weights and recognised.weights is not None and "model_file" not in overrides:
                weights = Path(private) / "model.pt"
                weights.write_bytes(recognised.weights)
                for name, data in recognised.member_weights.items():  # a fold ensemble's other members
                    (Path(private) / name).write_bytes(data)
                wf.parser["model_file"] = str(weights)
            wf.parser.update(overrides)
            logging.config.fileConfig(io.StringIO(LOGGING_CONF), disable_existing_loggers=False)
        wf.initialize()
        result = wf.run()
        wf.finalize()
    return result
