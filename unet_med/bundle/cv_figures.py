"""The CV report's outputs: pictures of the worst out-of-fold cases, and the report files themselves.

:func:`worst_case_figures` takes the cases :func:`unet_med.bundle.cv_report.cv_report` predicted, ranks them by a
score (mean Dice, or pixel error for membranes) and writes one PNG per worst case into the bundle's ``docs/``
(``cv_worst_<case>.png``): for a volume, the slice along the last axis with the most true foreground (or the most
predicted foreground when the truth is empty). :func:`write_report` writes ``runs/cv/cv_report.json`` and the
Markdown as ``runs/cv/cv_report.md`` and ``docs/cv_report.md``, atomically.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_med.engines.figures import save_overlay_figure
from unet_med.transforms.presets import load_like_preprocessing
from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = ["case_figures", "json_safe", "worst_case_figures", "write_report"]


def _first_path(image: Any) -> str:
    return str(image[0] if isinstance(image, (list, tuple)) else image)


def _slice(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        image, _ = load_like_preprocessing(_first_path(case["image"]))
        image = np.asarray(image, dtype=np.float32)
        truth = np.asarray(case["truth"]).squeeze()
        pred = np.asarray(case["to_input"](case["pred"])).squeeze()
        image = image.reshape(image.shape[: truth.ndim]) if image.size == truth.size else image[..., 0]
        img2d, truth2d, pred2d = _slice(image, truth, pred)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(case["case"]))
        title = f"{case['case']} (fold {case['fold']}): {label} {scores[case['case']]:.3f}"
        paths.append(save_overlay_figure(img2d, truth2d, pred2d, Path(out_dir) / f"cv_worst_{name}.png", title=title))
    return paths


def case_figures(
    root: Path, predictions: Sequence[Mapping[str, Any]], scores: Mapping[str, float], **kwargs: Any
) -> list[str]:
    """:func:`worst_case_figures` into the bundle's ``docs/`` (names relative to it); old ones are removed first."""
    docs = Path(root) / "docs"
    for old in docs.glob("cv_worst_*.png"):
        old.unlink()
    return [p.name for p in worst_case_figures(predictions, scores, docs, **kwargs)]


def write_report(root: Path, report: Mapping[str, Any], text: str) -> None:
    """The report as JSON (NaN and inf as strings) and its Markdown, under ``runs/cv/`` and in ``docs/``."""
    out = Path(root) / "runs" / "cv"
    atomic_write_json(out / "cv_report.json", json_safe(report))
    for path in (out / "cv_report.md", Path(root) / "docs" / "cv_report.md"):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")


def json_safe(value: Any) -> Any:
    """NaN and inf as strings (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
