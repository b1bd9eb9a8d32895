"""Per-case, per-class evaluation report: Dice, HD95 in mm and normalised surface Dice, as CSV and JSON.

MONAI's ``MeanDice`` / ``HausdorffDistance`` / ``SurfaceDistance`` handlers reduce over the dataset and work in
voxels unless told the spacing. An evaluation report wants the opposite: one row per case and class, distances
in millimetres from each case's own affine, and a summary that says how many values each mean rests on.

Conventions for empty masks (the ones nnU-Net and MONAI use):

============== ================ ====== ========= ==============
reference      prediction       Dice   HD95 (mm) surface Dice
============== ================ ====== ========= ==============
empty          empty            NaN    NaN       NaN
empty          not empty        0      inf       0
not empty      empty            0      inf       0
============== ================ ====== ========= ==============

Both empty means there is nothing to score: nnU-Net reports Dice NaN and MONAI reports NaN distances, and the
summary skips the value rather than rewarding it with 1. One side empty is a complete miss: Dice and surface Dice
are 0 (well defined), and HD95 is infinite (MONAI's value: the distance to an empty set). The summary's statistics
use only finite values and count what they skipped (``n_nan``, ``n_inf``), so a missed structure shows up as
``dice.mean`` dropping and ``hd95_mm.n_inf`` rising instead of turning the mean HD95 into ``inf``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch
from monai.data.utils import affine_to_spacing
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from monai.utils import ImageMetaKey

from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = ["METRIC_NAMES", "CaseMetricsReport", "case_metrics", "summarize_case_metrics"]

logger = logging.getLogger(__name__)

#: Metric columns of a row, in CSV order.
METRIC_NAMES: tuple[str, ...] = ("dice", "hd95_mm", "surface_dice")
CSV_COLUMNS: tuple[str, ...] = ("case", "class_index", "class_name", *METRIC_NAMES)

ClassNames = Mapping[int, str] | Sequence[str] | None


def _class_name(class_names: ClassNames, index: int, num_channels: int) -> str:
    """Name of channel ``index``: from a per-channel list, a ``{index: name}`` dict, or ``class_<index>``."""
    if class_names is None:
        return f"class_{index}"
    if isinstance(class_names, Mapping):
        return str(class_names.get(index, f"class_{index}"))
    if len(class_names) != num_channels:
        raise ValueError(
            f"class_names as a list names every channel, background included: got {len(class_names)} names for "
            f"{num_channels} channels. Pass {num_channels} names, or a dict such as {{1: 'liver'}} to name only "
            "some channels."
        )
    return str(class_names[index])


def _tolerances(surface_tolerance_mm: float | Sequence[float], num_classes: int) -> list[float]:
    """One finite, non-negative tolerance in mm per evaluated class."""
    if isinstance(surface_tolerance_mm, (int, float)):
        values = [float(surface_tolerance_mm)] * num_classes
    else:
        values = [float(t) for t in surface_tolerance_mm]
        if len(values) != num_classes:
            raise ValueError(
                f"surface_tolerance_mm has {len(values)} values but {num_classes} classes are evaluated; give one "
                "value per evaluated class (background excluded unless include_background=True) or a single float."
            )
    if any(not math.isfinite(t) or t < 0 for t in values):
        raise ValueError(f"surface_tolerance_mm must be finite and >= 0, got {surface_tolerance_mm!r}.")
    return values


def _plain(x: torch.Tensor) -> torch.Tensor:
    """``x`` without MONAI metadata, so the metric functions do no metadata bookkeeping."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _check_onehot(name: str, x: torch.Tensor) -> None:
    """Raises unless ``x`` is a (C, H, W) or (C, H, W, D) tensor of zeros and ones."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (C, *spatial), got {type(x).__name__}.")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (C, H, W) or (C, H, W, D), got {tuple(x.shape)}.")
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(
            f"{name} must be one-hot (zeros and ones); add AsDiscreted(argmax=True, to_onehot=C) (or threshold=0.5 "
            "for sigmoid outputs) to the postprocessing."
        )


def case_metrics(
    pred_onehot: torch.Tensor,
    label_onehot: torch.Tensor,
    spacing: float | Sequence[float] | None = None,
    class_names: ClassNames = None,
    include_background: bool = False,
    surface_tolerance_mm: float | Sequence[float] = 1.0,
) -> list[dict[str, Any]]:
    """Dice, HD95 in mm and normalised surface Dice of one case, per class.

    Distances are Euclidean in the units of ``spacing`` (mm for NIfTI). HD95 is MONAI's symmetric 95th-percentile
    Hausdorff distance between the mask edges; surface Dice counts the edge voxels of both masks that lie within
    the class's tolerance of the other mask's edge. Empty masks follow the table in this module's docstring: both
    empty gives NaN for all three, one empty gives Dice 0, HD95 ``inf`` and surface Dice 0.

    Args:
        pred_onehot: prediction, one-hot, shape (C, H, W) or (C, H, W, D), values 0 and 1.
        label_onehot: reference, same shape and encoding as ``pred_onehot``.
        spacing: voxel size per spatial axis (a float for isotropic voxels); ``None`` means 1.
        class_names: a name per channel (list, background included) or ``{channel: name}``; others are named
            ``class_<index>``.
        include_background: whether channel 0 is scored too.
        surface_tolerance_mm: surface Dice tolerance, one float for all classes or one per evaluated class.

    Returns:
        One dict per evaluated class, in channel order, with keys ``class_index``, ``class_name``, ``dice``,
        ``hd95_mm`` and ``surface_dice`` (Python floats).

    Raises:
        TypeError: if an input is not a tensor.
        ValueError: on mismatched shapes, non-binary values, a bad spacing or tolerance.

    Example::

        >>> label = torch.zeros(2, 10, 10, 10); label[1, 2:6, 2:6, 2:6] = 1; label[0] = 1 - label[1]
        >>> pred = torch.roll(label, shifts=2, dims=3)          # 2 voxels along the last axis
        >>> case_metrics(pred, label, spacing=(1.0, 1.0, 2.5), surface_tolerance_mm=5.0)[0]["hd95_mm"]
        5.0
        >>> case_metrics(pred[:, 3], label[:, 3], spacing=(0.8, 2.5))[0]["dice"]  # a 2D slice: half overlaps
        0.5
    """
    _check_onehot("pred_onehot", pred_onehot)
    _check_onehot("label_onehot", label_onehot)
    if pred_onehot.shape != label_onehot.shape:
        raise ValueError(
            f"pred and label must have the same shape (C, *spatial), got {tuple(pred_onehot.shape)} and "
            f"{tuple(label_onehot.shape)}; one-hot encode the label with AsDiscreted(keys='label', to_onehot=C)."
        )
    num_channels, spatial_dims = pred_onehot.shape[0], pred_onehot.ndim - 1
    first = 0 if include_background else 1
    if num_channels <= first:
        raise ValueError(
            f"no class to evaluate: {num_channels} channel(s) with include_background={include_background}."
        )
    if spacing is None:
        spacing_list = [1.0] * spatial_dims
    elif isinstance(spacing, (int, float)):
        spacing_list = [float(spacing)] * spatial_dims
    else:
        spacing_list = [float(s) for s in spacing]
    if len(spacing_list) != spatial_dims or any(not math.isfinite(s) or s <= 0 for s in spacing_list):
        raise ValueError(f"spacing must be one positive value or {spatial_dims} positive values, got {spacing!r}.")
    tolerances = _tolerances(surface_tolerance_mm, num_channels - first)

    # MONAI's metric functions take batch-first tensors: the scored channels as a batch of one.
    pred = _plain(pred_onehot)[first:].detach().bool()[None].float()
    label = _plain(label_onehot)[first:].detach().bool()[None].float()
    pred_any = pred.flatten(2).any(-1)[0]
    label_any = label.flatten(2).any(-1)[0]

    dice = compute_dice(pred, label, include_background=True, ignore_empty=False)[0]
    with warnings.catch_warnings():  # MONAI warns for every empty mask; the empty cases are defined above.
        warnings.filterwarnings("ignore", message=".*this may result in nan/inf distance.*")
        # MONAI 1.6 passes its own deprecated ``always_return_as_numpy`` to ``get_mask_edges``; not ours to fix.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        hd95 = compute_hausdorff_distance(pred, label, include_background=True, percentile=95, spacing=spacing_list)[0]
        nsd = compute_surface_dice(pred, label, tolerances, include_background=True, spacing=spacing_list)[0]

    rows = []
    for c in range(num_channels - first):
        in_pred, in_label = bool(pred_any[c]), bool(label_any[c])
        if in_pred and in_label:
            values = (float(dice[c]), float(hd95[c]), float(nsd[c]))
        else:  # set explicitly, so the table above holds whatever MONAI's own conventions become
            values = (math.nan, math.nan, math.nan) if in_pred == in_label else (0.0, math.inf, 0.0)
        name = _class_name(class_names, c + first, num_channels)
        rows.append({"class_index": c + first, "class_name": name, **dict(zip(METRIC_NAMES, values, strict=True))})
    return rows


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, population std and median of the finite values, with how many were used and skipped."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    n = int(finite.size)
    return {
        "mean": float(finite.mean()) if n else None,
        "std": float(finite.std()) if n else None,
        "median": float(np.median(finite)) if n else None,
        "n": n,
        "n_nan": int(np.isnan(array).sum()),
        "n_inf": int(np.isinf(array).sum()),
    }


def summarize_case_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of per-case rows (as :func:`case_metrics` returns them, plus ``case``), ready for JSON.

    Per class and metric it gives ``mean``, ``std`` (population, ``ddof=0``), ``median`` and ``n`` over the finite
    values, with ``n_nan`` / ``n_inf`` counting the values left out; a statistic with no finite value is ``None``.
    ``mean_dice`` is the mean over classes of the classes' mean Dice (classes without any finite Dice left out).

    Args:
        rows: dicts with ``case``, ``class_index``, ``class_name`` and the :data:`METRIC_NAMES`.

    Returns:
        ``{"key_metric": "mean_dice", "mean_dice": ..., "num_cases": ..., "metric_names": [...],
        "classes": {class_name: {"class_index": ..., "dice": {...}, "hd95_mm": {...}, "surface_dice": {...}}}}``.
    """
    by_class: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_class.setdefault(int(row["class_index"]), []).append(row)
    classes: dict[str, Any] = {}
    for index in sorted(by_class):
        class_rows = by_class[index]
        name = str(class_rows[0]["class_name"])
        if name in classes:
            raise ValueError(f"class name {name!r} is used by more than one class index; give unique class_names.")
        classes[name] = {"class_index": index, **{m: _stats([r[m] for r in class_rows]) for m in METRIC_NAMES}}
    class_means = [c["dice"]["mean"] for c in classes.values() if c["dice"]["mean"] is not None]
    return {
        "key_metric": "mean_dice",
        "mean_dice": float(np.mean(class_means)) if class_means else None,
        "num_cases": len({str(row["case"]) for row in rows}),
        "metric_names": list(METRIC_NAMES),
        "classes": classes,
    }


def _dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised ``torch.distributed`` group, or (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' rows, rank 0's first, on every rank; ``rows`` itself outside distributed runs."""
    _, world = _dist_rank_world()
    if world <= 1:
        return rows
    gathered: list[list[dict[str, Any]] | None] = [None] * world
    dist.all_gather_object(gathered, rows)
    return [row for rank_rows in gathered for row in (rank_rows or [])]


def _spacing_of(*tensors: Any) -> list[float] | None:
    """Voxel spacing from the affine of the first MetaTensor among ``tensors``; ``None`` (spacing 1) if none."""
    for x in tensors:
        if isinstance(x, MetaTensor):
            affine = torch.as_tensor(x.affine, dtype=torch.float64).cpu()
            return [float(s) for s in affine_to_spacing(affine, r=x.ndim - 1)]
    return None


def _name_of(*tensors: Any) -> str | None:
    """``filename_or_obj`` from the metadata of the first MetaTensor among ``tensors`` that has one."""
    for x in tensors:
        name = x.meta.get(ImageMetaKey.FILENAME_OR_OBJ) if isinstance(x, MetaTensor) else None
        if name not in (None, ""):
            return str(name)
    return None


class CaseMetricsReport:
    """Ignite handler writing per-case Dice, HD95 (mm) and surface Dice of a MONAI evaluator run to CSV and JSON.

    Attach it to a :class:`monai.engines.SupervisedEvaluator` built with ``decollate=True`` and a postprocessing
    that one-hot encodes both prediction and label, for example
    ``Compose([AsDiscreted(keys="pred", argmax=True, to_onehot=C), AsDiscreted(keys="label", to_onehot=C)])``.
    ``engine.state.output`` is then a list with one dict per case, holding ``pred`` and ``label`` of shape
    (C, H, W) or (C, H, W, D) with values 0 and 1 (a batch-first dict is decollated here too).

    On every ``ITERATION_COMPLETED`` each case is scored with :func:`case_metrics`: the spacing (mm) comes from the
    affine of the label if it is a MetaTensor, else of the prediction, else it is 1; the case is named by the
    ``filename_or_obj`` metadata of the label, else of the prediction, else by its position in the run
    (``"0"``, ``"1"``, ..., or ``"rank<r>_<i>"`` in distributed runs). Empty masks follow the table in this
    module's docstring (both empty: NaN, left out of the summary; one empty: Dice 0, HD95 inf, surface Dice 0).

    On ``COMPLETED`` the rows of all ranks are gathered (``torch.distributed`` with world size > 1), rows repeated
    for the same case and class (a distributed sampler padding the last batch) are dropped, and rank 0 writes,
    atomically, ``csv_name`` (one row per case and class, columns :data:`CSV_COLUMNS`, evaluation order) and
    ``summary_name`` (see :func:`summarize_case_metrics`; each class also records its ``surface_tolerance_mm``)
    into ``output_dir``. Every rank keeps the gathered rows in :attr:`rows` and the summary in :attr:`summary`.
    Each run of the engine starts a new report.

    Args:
        output_dir: folder for the two files; created if missing.
        class_names: a name per channel (list, background included) or ``{channel: name}``; others are named
            ``class_<index>``.
        include_background: whether channel 0 is scored too.
        surface_tolerance_mm: surface Dice tolerance in mm, one for all classes or one per evaluated class.
        pred_key: key of the one-hot prediction in each output dict.
        label_key: key of the one-hot reference in each output dict.
        csv_name: file name of the per-case table.
        summary_name: file name of the JSON summary.

    Example::

        evaluator = SupervisedEvaluator(device, val_loader, network, postprocessing=post, decollate=True)
        CaseMetricsReport("eval", class_names={1: "liver", 2: "tumour"}, surface_tolerance_mm=[2.0, 1.0]).attach(
            evaluator
        )
        evaluator.run()  # eval/metrics.csv, eval/summary.json
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: ClassNames = None,
        include_background: bool = False,
        surface_tolerance_mm: float | Sequence[float] = 1.0,
        pred_key: str = "pred",
        label_key: str = "label",
        csv_name: str = "metrics.csv",
        summary_name: str = "summary.json",
    ) -> None:
        tolerances = [surface_tolerance_mm] if isinstance(surface_tolerance_mm, (int, float)) else surface_tolerance_mm
        _tolerances(tolerances, len(tolerances))  # checks values; the count is checked once C is known
        for arg, value in (("csv_name", csv_name), ("summary_name", summary_name)):
            if not value or Path(value).name != value:
                raise ValueError(f"{arg} must be a plain file name, got {value!r}.")
        if csv_name == summary_name:
            raise ValueError(f"csv_name and summary_name must differ, both are {csv_name!r}.")
        self.output_dir = Path(output_dir)
        self.class_names = class_names
        self.include_background = include_background
        self.surface_tolerance_mm = surface_tolerance_mm
        self.pred_key = pred_key
        self.label_key = label_key
        self.csv_name = csv_name
        self.summary_name = summary_name
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None
        self._num_cases_seen = 0

    def attach(self, engine: Engine) -> None:
        """Registers the handler's callbacks on ``engine`` (once, however often it is called)."""
        for event, callback in (
            (Events.STARTED, self.reset),
            (Events.ITERATION_COMPLETED, self.iteration_completed),
            (Events.COMPLETED, self.completed),
        ):
            if not engine.has_event_handler(callback, event):
                engine.add_event_handler(event, callback)

    def reset(self, engine: Engine | None = None) -> None:
        """Forgets the rows of a previous run."""
        self.rows = []
        self.summary = None
        self._num_cases_seen = 0

    def iteration_completed(self, engine: Engine) -> None:
        """Scores each case of ``engine.state.output`` and keeps its rows."""
        output = engine.state.output
        if isinstance(output, Mapping):
            output = decollate_batch(output, detach=True)
        if not isinstance(output, list):
            raise TypeError(
                "CaseMetricsReport expects engine.state.output to be a list of per-case dicts (decollate=True), "
                f"got {type(output).__name__}."
            )
        rank, world = _dist_rank_world()
        for item in output:
            if not isinstance(item, Mapping) or self.pred_key not in item or self.label_key not in item:
                keys = list(item) if isinstance(item, Mapping) else type(item).__name__
                raise KeyError(f"each output item needs keys {self.pred_key!r} and {self.label_key!r}, got {keys}.")
            pred, label = item[self.pred_key], item[self.label_key]
            index = self._num_cases_seen
            self._num_cases_seen += 1
            case = _name_of(label, pred) or (f"rank{rank}_{index}" if world > 1 else str(index))
            rows = case_metrics(
                pred,
                label,
                spacing=_spacing_of(label, pred),
                class_names=self.class_names,
                include_background=self.include_background,
                surface_tolerance_mm=self.surface_tolerance_mm,
            )
            self.rows.extend({"case": case, **row} for row in rows)

    def completed(self, engine: Engine) -> None:
        """Gathers the rows of all ranks, summarises them and, on rank 0, writes the two files."""
        gathered = _gather_rows(self.rows)
        rows, seen = [], set()
        for row in gathered:
            key = (row["case"], row["class_index"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
        if len(rows) < len(gathered):
            logger.warning(
                "dropped %d repeated (case, class) rows, e.g. from a padding sampler", len(gathered) - len(rows)
            )
        self.rows = rows
        summary = summarize_case_metrics(rows)
        first = 0 if self.include_background else 1
        for entry in summary["classes"].values():
            tolerance = self.surface_tolerance_mm
            if not isinstance(tolerance, (int, float)):
                tolerance = tolerance[entry["class_index"] - first]
            entry["surface_tolerance_mm"] = float(tolerance)
        self.summary = summary
        if _dist_rank_world()[0] != 0:
            return
        with atomic_path(self.output_dir / self.csv_name) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_json(self.output_dir / self.summary_name, summary)
        logger.info(
            "case metrics of %d cases written to %s (mean Dice %s)",
            summary["num_cases"],
            self.output_dir,
            summary["mean_dice"],
        )
