"""Pictures of the worst out-of-fold cases for the model card: image, truth and prediction side by side.

:func:`worst_case_figures` takes the cases :func:`unet_med.bundle.cv_report.cv_report` predicted, ranks them by a
score (mean Dice, or pixel error for membranes) and writes one PNG per worst case into the bundle's ``docs/``
(``cv_worst_<case>.png``): for a volume, the slice along the last axis with the most true foreground (or the most
predicted foreground when the truth is empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_med.data.readers import read_array
from unet_med.engines.figures import save_overlay_figure

__all__ = ["worst_case_figures"]


def _first_path(image: Any) -> str:
    return str(image[0] if isinstance(image, (list, tuple)) else image)


def _slice(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """2D views of a case: the arrays themselves, or one slice along the last axis of a volume."""
    if truth.ndim == 2:
        return image.reshape(truth.shape), truth, pred
    counts = (truth > 0).reshape(-1, truth.shape[-1]).sum(0)
    if not counts.any():
        counts = (pred > 0).reshape(-1, pred.shape[-1]).sum(0)
    z = int(np.argmax(counts))
    return image[..., z], truth[..., z], pred[..., z]


def worst_case_figures(
    predictions: Sequence[Mapping[str, Any]],
    scores: Mapping[str, float],
    out_dir: str | Path,
    worst: Callable[[float], float] = lambda dice: dice,
    count: int = 2,
    label: str = "mean Dice",
) -> list[Path]:
    """Writes a figure for each of the ``count`` worst cases; returns the paths.

    Args:
        predictions: cases with ``case``, ``fold``, ``image`` (its file), ``pred`` (network grid), ``to_input``,
            ``truth`` (the input's grid).
        scores: a score per case name.
        out_dir: where the PNGs go (the bundle's ``docs/``).
        worst: sort key, smallest first (``lambda e: -e`` for an error).
        count: how many cases.
        label: the score's name in the figure title.
    """
    ranked = sorted((c for c in predictions if c["case"] in scores), key=lambda c: worst(scores[c["case"]]))
    paths = []
    for case in ranked[:count]:
        image, _ = read_array(_first_path(case["image"]))
        image = np.asarray(image, dtype=np.float32)
        truth = np.asarray(case["truth"]).squeeze()
        pred = np.asarray(case["to_input"](case["pred"])).squeeze()
        image = image.reshape(image.shape[: truth.ndim]) if image.size == truth.size else image[..., 0]
        views = _slice(image, truth, pred)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(case["case"]))
        title = f"{case['case']} (fold {case['fold']}): {label} {scores[case['case']]:.3f}"
        paths.append(save_overlay_figure(*views, Path(out_dir) / f"cv_worst_{name}.png", title=title))
    return paths
