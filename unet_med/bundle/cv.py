"""Cross-validated training of a bundle: every fold in turn, behind the recognition gate (``unet-med bundle cv``).

Fold ``k`` is the bundle's ordinary ``training`` workflow with ``fold=k`` (:func:`unet_med.bundle.run.run_bundle`):
the split is fold ``k`` of a seeded, stratified ``num_folds``-fold split by case
(:func:`unet_med.data.folds.fold_split`), and everything the fold writes lies under ``runs/fold{k}/`` (its
``datalist.json``, logs, and ``models/model.pt`` / ``models/last.pt``), so folds never overwrite each other. A
finished fold's last-epoch weights are kept as ``models/final.pt`` (:func:`final_weights`): the CV report scores
them and an ensemble ships them, so no epoch is chosen on the cases the report scores.

Folds run one after another. A fold that finished (``runs/fold{k}/fold.json``) is skipped; a fold that was killed
(a ``last.pt`` without ``fold.json``) resumes from its last completed epoch. On several GPUs, run one process per
fold instead: ``unet-med bundle run DIR training --fold k`` (then ``unet-med bundle cv DIR`` marks nothing it did
not run, so use ``cv-report`` directly).

Example::

    run_cv("bundles/hippocampus_mri", overrides={"dataset_dir": "/data/Task04_Hippocampus"})
    run_cv("bundles/hippocampus_mri", folds=[3], overrides={"dataset_dir": "/data/Task04_Hippocampus"})
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unet_med.bundle.paths import run_dir, weights_dir
from unet_med.bundle.run import run_bundle
from unet_med.bundle.task import load_task
from unet_med.bundle.template import with_defaults
from unet_med.engines.checkpoint import load_state_dict
from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = ["FINAL_WEIGHTS", "FOLD_DONE", "final_weights", "fold_state", "num_folds_of", "run_cv"]

logger = logging.getLogger(__name__)

#: Written into ``runs/fold{k}/`` when fold ``k`` has finished training.
FOLD_DONE = "fold.json"
#: The weights of a fold's last epoch, beside its ``model.pt`` (the best validation epoch) and ``last.pt``.
FINAL_WEIGHTS = "final.pt"
_FIXED = ("fold", "output_dir", "ckpt_dir", "resume")


def num_folds_of(bundle_dir: str | os.PathLike, overrides: dict[str, Any] | None = None) -> int:
    """The bundle's ``num_folds`` (task field ``training.num_folds``), or the override."""
    if overrides and "num_folds" in overrides:
        return int(overrides["num_folds"])
    return int(with_defaults(load_task(bundle_dir))["training"]["num_folds"])


def fold_state(bundle_dir: str | os.PathLike, fold: int) -> str:
    """``"done"`` (finished), ``"killed"`` (a ``last.pt`` to resume from) or ``"new"``."""
    root = str(Path(bundle_dir).resolve())
    if (Path(run_dir(root, fold)) / FOLD_DONE).is_file():
        return "done"
    if (Path(weights_dir(root, fold)) / "last.pt").is_file():
        return "killed"
    return "new"


def final_weights(bundle_dir: str | os.PathLike, fold: int) -> Path:
    """The weights of fold ``fold``'s last epoch (``runs/fold{k}/models/final.pt``), taken from its ``last.pt``
    once the fold has finished: marked by ``unet-med bundle cv``, or, for a fold trained on its own (``unet-med
    bundle run DIR training --fold k``, one per GPU), a ``last.pt`` whose trainer ran every epoch.

    These, not the best-validation ``model.pt``, are what the CV report scores and an ensemble ships: choosing an
    epoch by the held-out cases' Dice would tune the model on the very cases the report then scores.

    Raises:
        FileNotFoundError: the fold has not finished.
    """
    root = str(Path(bundle_dir).resolve())
    out = Path(weights_dir(root, fold)) / FINAL_WEIGHTS
    if out.is_file():
        return out
    last = Path(weights_dir(root, fold)) / "last.pt"
    checkpoint = load_state_dict(last) if last.is_file() else {}
    trainer = checkpoint.get("trainer", {})
    ran_every_epoch = bool(trainer) and trainer["iteration"] >= trainer["epoch_length"] * trainer["max_epochs"]
    if "model" not in checkpoint or not (fold_state(root, fold) == "done" or ran_every_epoch):
        raise FileNotFoundError(f"fold {fold} of {root} has not finished training; run 'unet-med bundle cv' first")
    with atomic_path(out) as tmp:
        torch.save(checkpoint["model"], tmp)
    return out


def run_cv(
    bundle_dir: str | os.PathLike,
    folds: Sequence[int] | None = None,
    overrides: dict[str, Any] | None = None,
    trust_bundle_code: bool = False,
) -> list[int]:
    """Trains the given folds (default all ``num_folds``) one after another; returns the folds it trained.

    Args:
        bundle_dir: the bundle folder.
        folds: fold indices, each in ``0 .. num_folds - 1``.
        overrides: config ids for every fold (``dataset_dir``, ``max_epochs``, ``device``, ...).
        trust_bundle_code: run a bundle that is not recognised (see :func:`~unet_med.bundle.run.run_bundle`).

    Raises:
        ValueError: a fold outside the range, or an override of what each fold sets itself (``fold``,
            ``output_dir``, ``ckpt_dir``, ``resume``).
        unet_med.bundle.manifest.BundleError: the bundle is not recognised.
    """
    root = Path(bundle_dir).resolve()
    overrides = dict(overrides or {})
    fixed = sorted(k for k in _FIXED if k in overrides)
    if fixed:
        raise ValueError(f"{fixed}: set per fold by 'unet-med bundle cv'; use --folds to choose folds")
    num_folds = num_folds_of(root, overrides)
    folds = list(range(num_folds)) if folds is None else [int(f) for f in folds]
    bad = [f for f in folds if not 0 <= f < num_folds]
    if bad:
        raise ValueError(f"folds {bad} outside 0..{num_folds - 1} (num_folds {num_folds})")
    trained = []
    for fold in folds:
        state = fold_state(root, fold)
        if state == "done":
            logger.info("fold %d of %d: finished before, skipped", fold, num_folds)
            continue
        logger.info("fold %d of %d: %s", fold, num_folds, "resuming" if state == "killed" else "training")
        fold_overrides = {**overrides, "fold": fold, "num_folds": num_folds, "resume": state == "killed"}
        run_bundle(root, "training", fold_overrides, trust_bundle_code=trust_bundle_code)
        done = {"fold": fold, "num_folds": num_folds, "finished": True, "resumed": state == "killed"}
        atomic_write_json(Path(run_dir(str(root), fold)) / FOLD_DONE, done)
        final_weights(root, fold)
        trained.append(fold)
    return trained
