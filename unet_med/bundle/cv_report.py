"""The cross-validation report: every case's out-of-fold prediction, scored, and the post-processing it supports.

After ``unet-med bundle cv`` each case was a validation case of exactly one fold. :func:`cv_report` predicts it with
that fold's final model (``runs/fold{k}/models/final.pt``, its last epoch: no epoch is chosen on the cases scored)
through the bundle's own inference path (its preprocessing, :class:`~unet_med.inference.inferer.ScanInferer`, the
argmax label map, the inverse back to the input's grid) and scores it against its label file: per class (or per
region, for a bundle evaluated by regions such as the BraTS whole tumour) and per case Dice, HD95 and surface Dice,
with mean and standard deviation over the cases (:func:`unet_med.engines.case_metrics.summarize_case_metrics`).

The same predictions decide the post-processing, per class: keep-largest-component is switched on for class ``c``
only when it raises the out-of-fold mean Dice of what ``c`` belongs to (class ``c`` itself, or the regions holding
``c``; :func:`choose_keep_largest`). It only turns class-``c`` voxels into background, so each class is decided on
its own; the post-processed figures apply every chosen class together. With ``apply=True`` the choice is written
into ``configs/task.json`` (``postprocessing.keep_largest_component``) and the configs are rebuilt.

Written: ``runs/cv/cv_report.json``, ``runs/cv/cv_report.md`` and the Markdown again as ``docs/cv_report.md`` for
the model card.

Example::

    report = cv_report("bundles/hippocampus_mri", apply=True)
    report["postprocessed"]["mean_dice"], report["keep_largest_component"]["anterior"]["keep"]
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_med.bundle.build import build_bundle
from unet_med.bundle.cv import final_weights, num_folds_of
from unet_med.bundle.cv_figures import case_figures, write_report
from unet_med.bundle.paths import run_dir
from unet_med.bundle.task import TASK_FILE, load_task
from unet_med.bundle.template import config_text, with_defaults
from unet_med.data.datalist import read_datalist
from unet_med.data.readers import image_suffix
from unet_med.engines.case_metrics import case_metrics, summarize_case_metrics
from unet_med.transforms.presets import load_like_preprocessing
from unet_med.transforms.regions import label_to_regions
from unet_med.utils.io import atomic_path

__all__ = [
    "apply_keep_largest",
    "choose_keep_largest",
    "class_volumes_ml",
    "cv_report",
    "keep_largest",
    "report_markdown",
    "score_labels",
]

logger = logging.getLogger(__name__)


def keep_largest(mask: torch.Tensor, label: int) -> torch.Tensor:
    """``mask`` ``(*spatial)`` with only the largest connected component of ``label`` kept (the rest background),
    as the bundle's ``ScoresToLabelsd(keep_largest=[label])`` does; ``mask`` itself is left as it is."""
    from monai.transforms import KeepLargestConnectedComponent

    keep = KeepLargestConnectedComponent(applied_labels=[int(label)], is_onehot=False)
    return torch.as_tensor(keep(mask[None].clone()))[0].to(mask.dtype)  # the transform edits its input


def score_labels(
    pred: torch.Tensor | np.ndarray,
    label: torch.Tensor | np.ndarray,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    surface_tolerance_mm: float = 2.0,
    regions: Sequence[Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """Dice, HD95 and surface Dice of each foreground class of a label map ``pred`` against ``label`` (both
    ``(*spatial)`` class indices): :func:`~unet_med.engines.case_metrics.case_metrics` rows.

    With ``regions`` (e.g. BraTS whole tumour, tumour core, enhancing tumour) each region, a set of labels, is
    scored instead of each class: row ``class_index`` ``i`` is region ``i - 1`` and ``class_names`` names the
    background and then the regions.

    Raises:
        ValueError: the maps differ in shape.
    """
    pred_t, label_t = torch.as_tensor(np.asarray(pred)).long(), torch.as_tensor(np.asarray(label)).long()
    if pred_t.shape != label_t.shape:
        raise ValueError(f"prediction {tuple(pred_t.shape)} and label {tuple(label_t.shape)} differ in shape")

    def onehot(t: torch.Tensor) -> torch.Tensor:
        if regions is not None:
            maps = label_to_regions(t[None], regions)
            return torch.cat([torch.zeros_like(maps[:1]), maps])  # channel 0 stands for the background
        return torch.nn.functional.one_hot(t.clamp(0, num_classes - 1), num_classes).movedim(-1, 0).float()

    names = list(class_names) if class_names is not None else None
    return case_metrics(onehot(pred_t), onehot(label_t), spacing, names, surface_tolerance_mm=surface_tolerance_mm)


def class_volumes_ml(
    pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, classes: Sequence[str], spacing: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Predicted and true volume of each foreground class in ml: ``{name: {"pred_ml": ..., "truth_ml": ...}}``
    (both maps class indices on the same grid of voxel size ``spacing`` mm)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    pred_a, truth_a = np.asarray(pred), np.asarray(truth)
    return {
        name: {
            "pred_ml": float((pred_a == index).sum()) * voxel_ml,
            "truth_ml": float((np.rint(truth_a) == index).sum()) * voxel_ml,
        }
        for index, name in enumerate(classes)
        if index > 0
    }


def _unit_dice(rows: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Mean finite Dice per scored class or region (NaN, both masks empty, left out as in the summaries)."""
    by_unit: dict[int, list[float]] = {}
    for row in rows:
        by_unit.setdefault(int(row["class_index"]), []).append(float(row["dice"]))
    means = {}
    for index, values in by_unit.items():
        finite = [v for v in values if math.isfinite(v)]
        means[index] = float(np.mean(finite)) if finite else math.nan
    return means


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite and len(finite) == len(values) else math.nan


def choose_keep_largest(
    base_rows: Sequence[Mapping[str, Any]],
    kept_rows: Sequence[Mapping[str, Any]],
    candidates: Mapping[int, tuple[str, Sequence[int]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per class: keep the largest component only when that raises the out-of-fold mean Dice.

    Args:
        base_rows: per case and scored unit (class or region) rows of the plain argmax maps (``class_index``,
            ``class_name``, ``dice``).
        kept_rows: the same cases scored with one class's largest component kept; ``candidate`` names that class
            (default: the row's own ``class_index``, for bundles scored per class).
        candidates: class index -> (its name, the scored units its voxels belong to); default: every scored
            class is a candidate of its own. For regions, class 4 of BraTS belongs to all three regions.

    Returns:
        ``{class_name: {"class_index", "dice_without", "dice_with", "keep"}}``, Dice as the mean over the units
        the class belongs to; ``keep`` is true only when ``dice_with > dice_without``.
    """
    without = _unit_dice(base_rows)
    if candidates is None:
        names = {int(r["class_index"]): str(r["class_name"]) for r in base_rows}
        candidates = {index: (name, [index]) for index, name in names.items()}
    out = {}
    for index in sorted(candidates):
        name, units = candidates[index]
        with_ = _unit_dice([r for r in kept_rows if int(r.get("candidate", r["class_index"])) == index])
        a = _mean([without.get(u, math.nan) for u in units])
        b = _mean([with_.get(u, math.nan) for u in units])
        keep = math.isfinite(a) and math.isfinite(b) and b > a
        out[name] = {"class_index": index, "dice_without": a, "dice_with": b, "keep": bool(keep)}
    return out


def apply_keep_largest(bundle_dir: str | os.PathLike, labels: Sequence[int]) -> list[Path]:
    """Writes ``postprocessing.keep_largest_component`` into the task description and rebuilds the configs;
    returns the files that changed."""
    root = Path(bundle_dir)
    task = json.loads((root / TASK_FILE).read_text(encoding="utf-8"))
    task.setdefault("postprocessing", {})["keep_largest_component"] = sorted(int(v) for v in labels)
    with atomic_path(root / TASK_FILE) as tmp:
        tmp.write_text(config_text(task), encoding="utf-8")
    return build_bundle(root)


def _case_name(image: Any) -> str:
    path = Path(image[0] if isinstance(image, (list, tuple)) else image)
    suffix = image_suffix(path) or path.suffix
    return path.name[: -len(suffix)] if suffix else path.name


def _spacing(affine: np.ndarray, dims: int) -> list[float]:
    return [float(s) for s in np.linalg.norm(np.asarray(affine)[:dims, :dims], axis=0)]


def _fold_cases(root: Path, fold: int) -> list[dict[str, Any]]:
    path = Path(run_dir(str(root), fold)) / "datalist.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; train fold {fold} first (unet-med bundle cv)")
    doc = read_datalist(path)
    if doc.get("fold") != fold:
        raise ValueError(f"{path}: not the split of fold {fold} (it says fold {doc.get('fold')})")
    return list(doc.get("validation", []))


def _scored_units(task: dict[str, Any]) -> tuple[list[str], list[tuple[int, ...]] | None]:
    """Names of what is scored (``background`` first) and the regions, or ``None`` when each class is scored."""
    if task["evaluation"]["report"] == "regions":
        regions = task["evaluation"]["regions"]
        return ["background"] + [r["name"] for r in regions], [tuple(r["labels"]) for r in regions]
    return list(task["classes"]), None


def _oof_predictions(
    root: Path, folds: Sequence[int], task: dict[str, Any], device: str, trust_bundle_code: bool
) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    """Every held-out case of the folds: its out-of-fold argmax map (network grid), the label (input grid), the
    spacing and how to map a label map back onto the input's grid."""
    from unet_med.inference.bundle_model import load_bundle
    from unet_med.inference.postprocess import invert_to_input, scores_to_labels
    from unet_med.inference.predictor import Predictor

    labels = task["labels"]
    mapping = dict(zip(labels["values"], labels["map_to"])) if labels["kind"] == "values" else None
    cases: list[dict[str, Any]] = []
    fold_cases: dict[int, list[str]] = {}
    for fold in folds:
        weights = final_weights(root, fold)
        model = load_bundle(
            root, device=device, model_file=weights, overrides={"ensemble": 1}, trust_bundle_code=trust_bundle_code
        )
        predictor = Predictor(model, device=device)
        fold_cases[fold] = []
        for item in _fold_cases(root, fold):
            case = _case_name(item["image"])
            fold_cases[fold].append(case)
            data = model.preprocessing({"image": item["image"]})
            truth, affine = load_like_preprocessing(item["label"])  # the prediction's axis order
            if mapping is not None:
                truth = np.vectorize(lambda v: mapping.get(int(v), int(v)))(np.rint(truth).astype(np.int64))

            def on_input_grid(mask: torch.Tensor, image: Any = data["image"], pre: Any = model.preprocessing) -> Any:
                return invert_to_input(mask[None], image, pre)[0][..., 0]

            cases.append(
                {
                    "case": case,
                    "fold": fold,
                    "image": item["image"],
                    "pred": scores_to_labels(predictor.infer(data["image"])),
                    "truth": truth,
                    "spacing": _spacing(affine, task["spatial_dims"]),
                    "to_input": on_input_grid,
                }
            )
            logger.info("fold %d: %s predicted", fold, case)
    return cases, fold_cases


def _score(case: Mapping[str, Any], mask: torch.Tensor, task: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
    names, regions = _scored_units(task)
    rows = score_labels(
        case["to_input"](mask),
        case["truth"],
        len(task["classes"]),
        case["spacing"],
        names,
        float(task["evaluation"]["surface_tolerance_mm"]),
        regions=regions,
    )
    return [{"case": case["case"], "fold": case["fold"], **extra, **r} for r in rows]


def _candidates(task: dict[str, Any]) -> dict[int, tuple[str, list[int]]]:
    """Each foreground class and the scored units (classes, or regions holding it) keep-largest would change."""
    _, regions = _scored_units(task)
    classes = list(task["classes"])
    if regions is None:
        return {c: (classes[c], [c]) for c in range(1, len(classes))}
    return {c: (classes[c], [i + 1 for i, r in enumerate(regions) if c in r]) for c in range(1, len(classes))}


def _fmt(stats: Mapping[str, Any], digits: int = 3) -> str:
    if stats["mean"] is None:
        return "n/a"
    text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return text + (f" ({stats['n_inf']} inf)" if stats.get("n_inf") else "")


def _figure_lines(report: Mapping[str, Any]) -> list[str]:
    names = report.get("figures") or []
    if not names:
        return []
    lines = ["", "## Worst cases (image, truth, out-of-fold prediction)", ""]
    return lines + [f"![{name}]({name})" for name in names]


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown tables for the model card."""
    lines = [
        f"# Cross-validation: {report['bundle']}",
        "",
        f"{report['num_folds']}-fold cross-validation by case, {report['num_cases']} cases; each case predicted once "
        "by the final model of the fold that held it out, through the bundle's inference path (sliding window, "
        "labels back on the input's grid). Mean ± standard deviation over cases.",
        "",
    ]
    for title, key in (("Plain argmax", "raw"), ("With the chosen post-processing", "postprocessed")):
        summary = report[key]
        mean = summary["mean_dice"]
        lines += [f"## {title} (mean Dice {mean:.3f})" if mean is not None else f"## {title}", ""]
        lines += ["| class | Dice | HD95 (mm) | surface Dice |", "|---|---|---|---|"]
        for name, c in summary["classes"].items():
            lines.append(f"| {name} | {_fmt(c['dice'])} | {_fmt(c['hd95_mm'], 2)} | {_fmt(c['surface_dice'])} |")
        lines.append("")
    lines += [
        "## Keep-largest-component, chosen on the out-of-fold Dice",
        "",
        "| class | Dice without | Dice with | kept |",
        "|---|---|---|---|",
    ]
    for name, c in report["keep_largest_component"].items():
        lines.append(f"| {name} | {c['dice_without']:.4f} | {c['dice_with']:.4f} | {'yes' if c['keep'] else 'no'} |")
    lines += _figure_lines(report)
    classes = list(report["raw"]["classes"])
    header = "| case | fold | " + " | ".join(f"{n} Dice" for n in classes) + " |"
    lines += ["", "## Per case (plain argmax)", "", header]
    volumes = all("pred_ml" in c for case in report["cases"] for c in case["classes"].values())
    if volumes:
        lines[-1] += "".join(f" {n} ml predicted / true |" for n in classes)
    lines.append("|---|---|" + "---|" * (len(classes) * (2 if volumes else 1)))
    for case in report["cases"]:
        dice = " | ".join(f"{case['classes'][n]['dice']:.3f}" for n in classes)
        if volumes:
            dice += " | " + " | ".join(
                f"{case['classes'][n]['pred_ml']:.1f} / {case['classes'][n]['truth_ml']:.1f}" for n in classes
            )
        lines.append(f"| {case['case']} | {case['fold']} | {dice} |")
    return "\n".join(lines) + "\n"


def cv_report(
    bundle_dir: str | os.PathLike,
    folds: Sequence[int] | None = None,
    device: str = "cpu",
    apply: bool = False,
    trust_bundle_code: bool = False,
) -> dict[str, Any]:
    """Scores every fold's out-of-fold predictions, chooses the post-processing, writes the report (see the
    module docs); with ``apply``, writes the choice into the task description and rebuilds the configs.

    Raises:
        ValueError: a bundle scored as instances (nuclei: not supported yet).
        FileNotFoundError: a fold that has not been trained.
    """
    root = Path(bundle_dir).resolve()
    task = with_defaults(load_task(root))
    kind = task["evaluation"]["report"]
    if kind not in ("classes", "regions", "membranes") or task["labels"]["kind"] == "instances":
        raise ValueError(f"cv-report scores label maps; a '{kind}' bundle is not supported")
    num_folds = num_folds_of(root)
    folds = list(range(num_folds)) if folds is None else [int(f) for f in folds]
    predictions, fold_cases = _oof_predictions(root, folds, task, device, trust_bundle_code)
    if kind == "membranes":
        from unet_med.bundle.cv_membranes import membranes_report

        return membranes_report(root, task, predictions, fold_cases, num_folds)
    candidates = {c: v for c, v in _candidates(task).items() if v[1]}
    base_rows, kept_rows = [], []
    for case in predictions:
        base_rows += _score(case, case["pred"], task)
        for c in candidates:
            kept_rows += _score(case, keep_largest(case["pred"], c), task, candidate=c)
    choice = choose_keep_largest(base_rows, kept_rows, candidates)
    chosen = sorted(c["class_index"] for c in choice.values() if c["keep"])
    post_rows = base_rows
    if chosen:
        post_rows = []
        for case in predictions:
            mask = case["pred"]
            for c in chosen:
                mask = keep_largest(mask, c)
            post_rows += _score(case, mask, task)
    cases: dict[str, dict[str, Any]] = {}
    for r in base_rows:
        entry = cases.setdefault(r["case"], {"case": r["case"], "fold": r["fold"], "classes": {}})
        entry["classes"][r["class_name"]] = {m: r[m] for m in ("dice", "hd95_mm", "surface_dice")}
    if _scored_units(task)[1] is None:  # classes, not regions: predicted and true volume per class
        for case in predictions:
            volumes = class_volumes_ml(case["to_input"](case["pred"]), case["truth"], task["classes"], case["spacing"])
            for name, v in volumes.items():
                cases[case["case"]]["classes"][name].update(v)
    report = {
        "bundle": str(task["card"]["name"]),
        "num_folds": num_folds,
        "folds": {str(k): v for k, v in fold_cases.items()},
        "num_cases": len(cases),
        "raw": summarize_case_metrics(base_rows),
        "postprocessed": summarize_case_metrics(post_rows),
        "keep_largest_component": choice,
        "chosen_keep_largest_component": chosen,
        "cases": list(cases.values()),
    }
    per_case: dict[str, list[float]] = {}
    for r in post_rows:
        per_case.setdefault(r["case"], []).append(float(r["dice"]))
    scores = {case: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for case, v in per_case.items()}
    report["figures"] = case_figures(root, predictions, {k: v for k, v in scores.items() if math.isfinite(v)})
    write_report(root, report, report_markdown(report))
    if apply:
        apply_keep_largest(root, chosen)
    return report
