"""Shipping a fold ensemble in a bundle (``unet-med bundle ensemble``).

:func:`ship_ensemble` copies the final model of each chosen fold (``runs/fold{k}/models/final.pt``) into the
bundle's ``models/`` as float16 (:func:`~unet_med.engines.checkpoint.halve_weights`): the first as ``model.pt``
(the model single-model tools use), the others as ``model_fold1.pt``, ``model_fold2.pt``, ...
(:func:`~unet_med.inference.ensemble.member_name`), then sets ``inference.ensemble`` in the task description and
rebuilds the configs, so ``unet-med predict`` and ``inference.json`` average the members' probabilities in one
sliding-window pass. The members' total size must stay within ``max_bytes`` (20 MB: a bundle stays mailable);
nothing in ``models/`` changes when it does not.

Example::

    ship_ensemble("bundles/hippocampus_mri")                 # every finished fold
    ship_ensemble("bundles/sarcoma_ct", folds=[0, 1, 2])     # three members
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from unet_med.bundle.build import build_bundle
from unet_med.bundle.cv import FOLD_DONE, final_weights, num_folds_of
from unet_med.bundle.paths import run_dir
from unet_med.bundle.task import TASK_FILE
from unet_med.bundle.template import config_text
from unet_med.engines.checkpoint import halve_weights
from unet_med.inference.ensemble import member_name
from unet_med.utils.io import atomic_path

__all__ = ["MAX_BUNDLE_WEIGHTS", "ship_ensemble"]

#: Largest total size of a bundle's weights files.
MAX_BUNDLE_WEIGHTS = 20_000_000


def ship_ensemble(
    bundle_dir: str | os.PathLike, folds: Sequence[int] | None = None, max_bytes: int = MAX_BUNDLE_WEIGHTS
) -> list[Path]:
    """Copies the folds' final models into ``models/`` (float16) and sets ``inference.ensemble``; returns the
    weights files written, member 0 first.

    Args:
        bundle_dir: the bundle folder.
        folds: the folds to ship, in member order; default every finished fold (``runs/fold{k}/fold.json``).
        max_bytes: largest total size of the members.

    Raises:
        FileNotFoundError: a fold that has not finished, or no finished fold.
        ValueError: the members exceed ``max_bytes`` (ship fewer folds), or more than 16 members.
    """
    root = Path(bundle_dir).resolve()
    if folds is None:
        folds = [k for k in range(num_folds_of(root)) if (Path(run_dir(str(root), k)) / FOLD_DONE).is_file()]
    folds = [int(k) for k in folds]
    if not folds:
        raise FileNotFoundError(f"{root}: no finished fold to ship; run 'unet-med bundle cv' first")
    if len(folds) > 16:
        raise ValueError(f"at most 16 members, got {len(folds)}")
    models = root / "models"
    with tempfile.TemporaryDirectory(prefix="unet-med-ensemble-") as staging:
        written = []
        for i, fold in enumerate(folds):
            source = final_weights(root, fold)
            written.append(halve_weights(source, Path(staging) / member_name(i)))
        total = sum(p.stat().st_size for p in written)
        if total > max_bytes:
            raise ValueError(
                f"{len(folds)} members take {total / 1e6:.1f} MB in float16, over {max_bytes / 1e6:.0f} MB; ship "
                f"fewer folds (--folds) or a smaller network"
            )
        models.mkdir(exist_ok=True)
        for old in models.glob("model_fold*.pt"):
            old.unlink()
        for path in written:
            shutil.move(str(path), models / path.name)
    task_path = root / TASK_FILE
    task = json.loads(task_path.read_text(encoding="utf-8"))
    task["inference"] = {**task.get("inference", {}), "ensemble": len(folds)}
    with atomic_path(task_path) as tmp:
        tmp.write_text(config_text(task), encoding="utf-8")
    build_bundle(root)
    return [models / member_name(i) for i in range(len(folds))]
