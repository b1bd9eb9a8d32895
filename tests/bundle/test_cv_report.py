"""The CV report and the post-processing it chooses: keep-largest-component only where the out-of-fold Dice rises."""

from __future__ import annotations

import json

import torch

from unet_med.bundle.cv_report import choose_keep_largest, class_volumes_ml, cv_report, keep_largest, score_labels
from unet_med.bundle.task import load_task

NAMES = ["background", "organ", "lesion"]


def _rows(cases, keep: bool):
    """Rows of (prediction, label) pairs; with ``keep``, each class scored with its largest component kept."""
    base, kept = [], []
    for i, (pred, label) in enumerate(cases):
        base += [{"case": i, **r} for r in score_labels(pred, label, 3, class_names=NAMES)]
        if keep:
            for c in (1, 2):
                kept.append({"case": i, **score_labels(keep_largest(pred, c), label, 3, class_names=NAMES)[c - 1]})
    return base, kept


def test_keep_largest_switched_on_for_a_spurious_component_and_off_for_a_true_second_one():
    label = torch.zeros(24, 24, 24, dtype=torch.uint8)
    label[2:10, 2:10, 2:10] = 1  # class 1: one organ
    label[14:20, 2:8, 2:8] = 2  # class 2: two true lesions
    label[14:20, 14:20, 14:20] = 2
    pred = label.clone()
    pred[20:23, 20:23, 0:3] = 1  # a spurious class-1 island
    choice = choose_keep_largest(*_rows([(pred, label)], keep=True))
    assert choice["organ"]["keep"] is True and choice["organ"]["dice_with"] > choice["organ"]["dice_without"]
    assert choice["lesion"]["keep"] is False and choice["lesion"]["dice_with"] < choice["lesion"]["dice_without"]


def test_keep_largest_stays_off_when_it_changes_nothing():
    label = torch.zeros(16, 16, 16, dtype=torch.uint8)
    label[2:8, 2:8, 2:8] = 1
    label[10:14, 10:14, 10:14] = 2
    choice = choose_keep_largest(*_rows([(label, label)], keep=True))
    assert not any(c["keep"] for c in choice.values())


def test_cv_report_scores_every_case_out_of_fold_and_writes_the_choice(cv_trained):
    report = json.loads((cv_trained / "runs" / "cv" / "cv_report.json").read_text())
    assert report["num_cases"] == 4 and report["num_folds"] == 2
    assert sorted(c for cases in report["folds"].values() for c in cases) == sorted(c["case"] for c in report["cases"])
    for summary in (report["raw"], report["postprocessed"]):
        assert set(summary["classes"]) == {"organ", "lesion"}
        for metric in ("dice", "hd95_mm", "surface_dice"):
            assert {"mean", "std", "n"} <= set(summary["classes"]["organ"][metric])
    card = (cv_trained / "docs" / "cv_report.md").read_text()
    assert "| organ |" in card and "Keep-largest-component" in card
    for case in report["cases"]:  # over- or under-segmentation shows as predicted vs true volume
        assert case["classes"]["organ"]["truth_ml"] > 0 and case["classes"]["organ"]["pred_ml"] >= 0
    assert "organ ml predicted / true" in card
    assert len(report["figures"]) == 2  # the two worst cases, pictured for the model card
    for name in report["figures"]:
        assert (cv_trained / "docs" / name).read_bytes()[:4] == b"\x89PNG" and f"]({name})" in card

    report = cv_report(cv_trained, apply=True)  # write the choice into the task and rebuild
    task = load_task(cv_trained)
    assert task["postprocessing"]["keep_largest_component"] == report["chosen_keep_largest_component"]
    inference = json.loads((cv_trained / "configs" / "inference.json").read_text())
    step = inference["postprocessing"]["transforms"][0]
    assert step.get("keep_largest", []) == report["chosen_keep_largest_component"]


def test_regions_are_scored_and_a_class_is_judged_by_the_regions_that_hold_it():
    regions = [(1, 2), (2,)]  # "whole" holds classes 1 and 2, "core" class 2 only
    label = torch.zeros(24, 24, 24, dtype=torch.uint8)
    label[2:10, 2:10, 2:10] = 1
    label[4:8, 4:8, 4:8] = 2
    pred = label.clone()
    pred[18:22, 18:22, 18:22] = 1  # a spurious class-1 island: hurts "whole" only
    names = ["background", "whole", "core"]
    rows = score_labels(pred, label, 3, class_names=names, regions=regions)
    assert [r["class_name"] for r in rows] == ["whole", "core"] and rows[1]["dice"] == 1.0 and rows[0]["dice"] < 1.0
    kept = [
        {"candidate": c, **r}
        for c in (1, 2)
        for r in score_labels(keep_largest(pred, c), label, 3, class_names=names, regions=regions)
    ]
    choice = choose_keep_largest(rows, kept, {1: ("a", [1]), 2: ("b", [1, 2])})
    assert choice["a"]["keep"] is True and choice["a"]["dice_with"] == 1.0
    assert choice["b"]["keep"] is False


def test_keep_largest_leaves_its_input_as_it_is():
    mask = torch.zeros(12, 12, 12, dtype=torch.uint8)
    mask[1:4, 1:4, 1:4] = 1
    mask[8:10, 8:10, 8:10] = 1
    before = mask.clone()
    assert int(keep_largest(mask, 1).sum()) == 27 and torch.equal(mask, before)


def test_class_volumes_are_counted_per_class_in_ml():
    pred = torch.zeros(4, 5, 6, dtype=torch.long)
    truth = torch.zeros(4, 5, 6)
    pred[:2] = 1  # 60 voxels
    truth[:1] = 1  # 30 voxels
    truth[3, 0, 0] = 2
    volumes = class_volumes_ml(pred, truth, NAMES, spacing=(2.0, 1.0, 0.5))  # 1 mm^3 voxels
    assert volumes == {
        "organ": {"pred_ml": 0.06, "truth_ml": 0.03},
        "lesion": {"pred_ml": 0.0, "truth_ml": 0.001},
    }
