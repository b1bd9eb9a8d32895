"""The cross-validation report of a membrane bundle (ISBI 2012 EM): out-of-fold pixel error, Rand error, Dice.

:func:`unet_med.bundle.cv_report.cv_report` predicts every held-out image with its fold's model; for a bundle whose
evaluation is ``"membranes"`` this module scores those label maps as the bundle's ``evaluate.json`` does
(:func:`unet_med.engines.microscopy_report.membrane_metrics`: the membrane class against the true membranes) and
summarises them over images (mean, standard deviation, median). No post-processing is chosen: keep-largest would
cut a membrane network that is meant to be connected only through the whole image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MEMBRANE_METRICS", "membrane_markdown", "membrane_rows", "membranes_report", "summarize_images"]

#: Per-image figures, lower is better for the two errors.
MEMBRANE_METRICS = ("pixel_error", "rand_error", "membrane_dice")


def membrane_rows(predictions: Sequence[Mapping[str, Any]], membrane_class: int = 1) -> list[dict[str, Any]]:
    """One row per held-out image: ``case``, ``fold`` and :data:`MEMBRANE_METRICS`.

    Args:
        predictions: what :func:`unet_med.bundle.cv_report._oof_predictions` returns per case (``pred`` on the
            network's grid, ``to_input`` to the image's grid, ``truth`` as class indices).
        membrane_class: the class index of membranes in both maps.
    """
    from unet_med.engines.microscopy_report import membrane_metrics

    rows = []
    for case in predictions:
        pred = np.asarray(case["to_input"](case["pred"])).squeeze()
        truth = np.asarray(case["truth"]).squeeze()
        if pred.shape != truth.shape:
            raise ValueError(f"{case['case']}: prediction {pred.shape} and label {truth.shape} differ in shape")
        metrics = membrane_metrics(pred == membrane_class, truth == membrane_class)
        rows.append({"case": case["case"], "fold": case["fold"], **{k: float(metrics[k]) for k in MEMBRANE_METRICS}})
    return rows


def summarize_images(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = MEMBRANE_METRICS) -> dict[str, Any]:
    """Mean, standard deviation (``ddof=0``), median, minimum and maximum of each metric over the rows."""
    out: dict[str, Any] = {"num_cases": len(rows)}
    for name in metrics:
        values = np.asarray([float(r[name]) for r in rows], dtype=np.float64)
        out[name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "median": float(np.median(values)),
            "min": float(values.min()),
            "max": float(values.max()),
            "n": len(values),
        }
    return out


def membrane_markdown(report: Mapping[str, Any]) -> str:
    """The membrane report as Markdown for the model card."""
    summary = report["summary"]
    lines = [
        f"# Cross-validation: {report['bundle']}",
        "",
        f"{report['num_folds']}-fold cross-validation by image, {report['num_cases']} images; each image predicted "
        "once by the final model of the fold that held it out, through the bundle's inference path. Mean ± standard "
        "deviation over images (median, worst).",
        "",
        "| metric | mean ± std | median | worst |",
        "|---|---|---|---|",
    ]
    for name in MEMBRANE_METRICS:
        s = summary[name]
        worst = s["min"] if name == "membrane_dice" else s["max"]
        label = name.replace("_", " ")
        lines.append(f"| {label} | {s['mean']:.4f} ± {s['std']:.4f} | {s['median']:.4f} | {worst:.4f} |")
    figures = report.get("figures") or []
    if figures:
        lines += ["", "## Worst images (image, truth, out-of-fold prediction)", ""]
        lines += [f"![{name}]({name})" for name in figures]
    lines += ["", "## Per image", "", "| image | fold | pixel error | Rand error | membrane Dice |"]
    lines.append("|---|---|---|---|---|")
    for row in sorted(report["cases"], key=lambda r: -r["pixel_error"]):
        lines.append(
            f"| {row['case']} | {row['fold']} | {row['pixel_error']:.4f} | {row['rand_error']:.4f} | "
            f"{row['membrane_dice']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def membranes_report(
    root: Path,
    task: Mapping[str, Any],
    predictions: Sequence[Mapping[str, Any]],
    fold_cases: Mapping[int, list[str]],
    num_folds: int,
) -> dict[str, Any]:
    """Scores, summarises, pictures and writes the report of a membrane bundle (see the module docs)."""
    from unet_med.bundle.cv_figures import case_figures, write_report

    rows = membrane_rows(predictions, membrane_class=1)
    report: dict[str, Any] = {
        "bundle": str(task["card"]["name"]),
        "num_folds": num_folds,
        "folds": {str(k): v for k, v in fold_cases.items()},
        "num_cases": len(rows),
        "summary": summarize_images(rows),
        "cases": rows,
    }
    scores = {r["case"]: r["pixel_error"] for r in rows}
    report["figures"] = case_figures(root, predictions, scores, worst=lambda e: -e, label="pixel error")
    write_report(root, report, membrane_markdown(report))
    return report
