"""Per-image evaluation report for the 2D microscopy bundles, as CSV, JSON and overlay figures.

Two tasks:

- ``"membranes"`` (ISBI 2012 EM): the prediction's ``membrane_class`` against the truth's: pixel error,
  foreground-restricted Rand error over the cells (connected components of the non-membrane pixels) and
  membrane Dice.
- ``"instances"`` (DSB 2018 nuclei): instances from the background / interior / boundary probabilities
  (:func:`unet_med.transforms.classes_to_instances`) against the true instance map: foreground Dice, instance F1
  at IoU 0.5 and the Data Science Bowl average precision over IoU 0.5:0.05:0.95.

Example (an ``evaluate.json`` handler)::

    {"_target_": "unet_med.engines.MicroscopyReport", "output_dir": "@eval_dir", "task": "instances"}
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import ImageMetaKey

from unet_med.engines.figures import save_overlay_figure
from unet_med.engines.microscopy_metrics import (
    dice,
    dsb_average_precision,
    instance_f1,
    label_segments,
    pixel_error,
    rand_error,
)
from unet_med.transforms.microscopy import classes_to_instances
from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = ["TASKS", "MicroscopyReport", "instance_metrics", "membrane_metrics"]

logger = logging.getLogger(__name__)

TASKS = ("membranes", "instances")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def membrane_metrics(pred_membrane: np.ndarray, truth_membrane: np.ndarray) -> dict[str, float]:
    """ISBI 2012 figures of one image from binary membrane masks (nonzero = membrane)."""
    pred_cells = label_segments(pred_membrane == 0)
    truth_cells = label_segments(truth_membrane == 0)
    return {
        "pixel_error": pixel_error(pred_membrane, truth_membrane),
        "rand_error": rand_error(pred_cells, truth_cells),
        "membrane_dice": dice(pred_membrane, truth_membrane),
    }


def instance_metrics(pred_instances: np.ndarray, truth_instances: np.ndarray) -> dict[str, float]:
    """DSB 2018 figures of one image from two instance maps (0 = background)."""
    counts = instance_f1(pred_instances, truth_instances)
    return {
        "dice": dice(pred_instances, truth_instances),
        "f1": counts["f1"],
        "average_precision": dsb_average_precision(pred_instances, truth_instances),
        "num_pred": int(len(np.unique(pred_instances)) - (pred_instances == 0).any()),
        "num_true": int(len(np.unique(truth_instances)) - (truth_instances == 0).any()),
    }


class MicroscopyReport:
    """Ignite handler: scores each image of a MONAI evaluator run and writes ``metrics.csv``, ``summary.json``
    and ``overlay_<case>.png`` figures into ``output_dir``.

    The evaluator's postprocessing should leave class probabilities (softmax) in ``pred``, ``(C, H, W)`` per image
    (``decollate=True``); ``label`` is the class map ``(1, H, W)`` for membranes; for instances the true instance
    map is read from ``instance_key`` (in the output or the batch: a ``CopyItemsd`` of the label taken before it
    was turned into classes).

    Args:
        output_dir: folder for the report (created).
        task: ``"membranes"`` or ``"instances"``.
        membrane_class: the class index of membranes (task ``"membranes"``).
        instance_key: key of the true instance map (task ``"instances"``).
        min_size: smallest predicted object kept, in pixels (task ``"instances"``).
        num_figures: overlay figures written, for the first images in evaluation order.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        task: str = "membranes",
        membrane_class: int = 1,
        instance_key: str = "instances",
        min_size: int = 8,
        num_figures: int = 1,
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.output_dir = Path(output_dir)
        self.task = task
        self.membrane_class = membrane_class
        self.instance_key = instance_key
        self.min_size = min_size
        self.num_figures = num_figures
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        """Registers the callbacks on ``engine``."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows, self.summary = [], None

    def _pair(self, item: Mapping[str, Any], batch_item: Any) -> tuple[np.ndarray, np.ndarray]:
        """The (prediction, truth) label maps of one image, 2D."""
        probs = item[self.pred_key]
        if self.task == "membranes":
            pred = (_numpy(probs).argmax(0) == self.membrane_class).astype(np.uint8)
            truth = (np.squeeze(_numpy(item[self.label_key]), 0) == self.membrane_class).astype(np.uint8)
            return pred, truth
        source = item if self.instance_key in item else batch_item
        if not isinstance(source, Mapping) or self.instance_key not in source:
            raise KeyError(f"the true instance map {self.instance_key!r} is in neither the output nor the batch")
        truth = np.squeeze(_numpy(source[self.instance_key]), 0).astype(np.int64)
        return classes_to_instances(probs, min_size=self.min_size), truth

    def iteration_completed(self, engine: Engine) -> None:
        output, batch = engine.state.output, engine.state.batch
        if not isinstance(output, list):
            raise TypeError("MicroscopyReport expects per-image outputs (an evaluator with decollate=True)")
        batch_items = batch if isinstance(batch, list) else [None] * len(output)
        for item, batch_item in zip(output, batch_items):
            pred, truth = self._pair(item, batch_item)
            metrics = membrane_metrics(pred, truth) if self.task == "membranes" else instance_metrics(pred, truth)
            label = item[self.label_key]
            meta = getattr(label, "meta", {})
            name = Path(str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, len(self.rows)))).name.split(".")[0]
            self.rows.append({"case": name, **metrics})
            if len(self.rows) <= self.num_figures:
                image = _numpy(item[self.image_key])[0]
                title = f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
                save_overlay_figure(image, truth, pred, self.output_dir / f"overlay_{name}.png", title=title)

    def completed(self, engine: Engine) -> None:
        columns = list(self.rows[0]) if self.rows else ["case"]
        summary: dict[str, Any] = {"task": self.task, "num_cases": len(self.rows), "metrics": {}}
        for key in columns[1:]:
            values = [float(r[key]) for r in self.rows if not math.isnan(float(r[key]))]
            summary["metrics"][key] = {
                "mean": float(np.mean(values)) if values else float("nan"),
                "median": float(np.median(values)) if values else float("nan"),
                "n": len(values),
            }
        self.summary = summary
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        atomic_write_json(self.output_dir / "summary.json", summary)
        means = ", ".join(f"{k} {v['mean']:.4f}" for k, v in summary["metrics"].items())
        logger.info("%d images: %s (report in %s)", len(self.rows), means, self.output_dir)
