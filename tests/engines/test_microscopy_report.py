"""Tests for unet_med.engines.microscopy_report and figures: per-image figures on hand-computed cases, the
report written by a MONAI evaluator run, and the overlay figure."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from unet_med.engines import MicroscopyReport, instance_metrics, membrane_metrics, save_overlay_figure


def test_membrane_metrics_on_a_hand_computed_case():
    truth = np.zeros((4, 4), np.uint8)
    truth[:, 2] = 1  # a wall splitting two cells of 4x2 and 4x1 pixels
    pred = truth.copy()
    pred[0, 2] = 0  # one wall pixel missed: the two cells merge
    m = membrane_metrics(pred, truth)
    assert m["pixel_error"] == pytest.approx(1 / 16)
    assert m["membrane_dice"] == pytest.approx(2 * 3 / (3 + 4))
    # over the 12 true-cell pixels the prediction has one cell, the truth two (8 and 4 pixels):
    # precision = (8^2 + 4^2) / 12^2, recall = (8^2 + 4^2) / (8^2 + 4^2) = 1
    precision, recall = (64 + 16) / 144, 1.0
    assert m["rand_error"] == pytest.approx(1 - 2 * precision * recall / (precision + recall))


def test_instance_metrics_on_a_hand_computed_case():
    truth = np.zeros((10, 10), np.int64)
    truth[0:4, 0:4], truth[6:10, 6:10] = 1, 2
    pred = np.zeros_like(truth)
    pred[0:4, 0:4] = 5  # exact
    pred[6:10, 6:8] = 9  # half of object 2: IoU 0.5, not a match at "> 0.5"
    m = instance_metrics(pred, truth)
    assert m["dice"] == pytest.approx(2 * 24 / (24 + 32))
    assert m["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert m["average_precision"] == pytest.approx(1 / 3)
    assert (m["num_pred"], m["num_true"]) == (2, 2)


@pytest.mark.parametrize("task", ["membranes", "instances"])
def test_report_writes_csv_summary_and_figure(task, tmp_path):
    truth = np.zeros((12, 12), np.int64)
    truth[1:5, 1:5], truth[7:11, 7:11] = 1, 2
    if task == "membranes":
        label = (truth == 0).astype(np.uint8)  # "membrane" everywhere but the two cells
        probs = np.stack([1.0 - label, label]).astype(np.float32)
        extra = {}
    else:
        classes = (truth > 0).astype(np.int64)
        probs = np.stack([(classes == k).astype(np.float32) for k in range(3)])
        label, extra = classes.astype(np.uint8), {"instances": torch.as_tensor(truth)[None]}
    image = torch.rand(1, 12, 12)
    outputs = [
        {
            "image": image,
            "pred": torch.as_tensor(probs),
            "label": MetaTensor(torch.as_tensor(label)[None], meta={"filename_or_obj": "/data/labels/case7.png"}),
        }
    ]
    report = MicroscopyReport(tmp_path / "eval", task=task, min_size=2)
    engine = Engine(lambda e, b: outputs)
    report.attach(engine)

    @engine.on(Events.ITERATION_STARTED)
    def _batch(e):  # what a MONAI evaluator holds after decollation: one dict per image
        e.state.batch = [extra]

    engine.run([0], max_epochs=1)
    rows = list(csv.DictReader(open(tmp_path / "eval" / "metrics.csv")))
    assert rows[0]["case"] == "case7"
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    key = "pixel_error" if task == "membranes" else "f1"
    assert summary["metrics"][key]["mean"] == pytest.approx(0.0 if task == "membranes" else 1.0)
    assert (tmp_path / "eval" / "overlay_case7.png").stat().st_size > 1000


def test_overlay_figure_checks_shapes(tmp_path):
    image, label = np.random.default_rng(0).random((20, 30)), np.zeros((20, 30), np.int64)
    label[5:10, 5:10] = 1
    path = save_overlay_figure(image, label, label, tmp_path / "fig.png", title="t")
    from PIL import Image

    assert Image.open(path).format == "PNG"
    with pytest.raises(ValueError, match="2D"):
        save_overlay_figure(image, label[:10], label, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="task"):
        MicroscopyReport(tmp_path, task="cells")
