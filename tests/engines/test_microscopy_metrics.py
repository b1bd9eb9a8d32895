"""Tests for unet_med.engines.microscopy_metrics: hand-computed errors, matching, empty inputs, shape checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unet_med.engines.microscopy_metrics import (
    dice,
    dsb_average_precision,
    instance_f1,
    label_segments,
    match_instances,
    pixel_error,
    rand_error,
)


def square(top: int, left: int, size: int, label: int = 1, n: int = 12) -> np.ndarray:
    out = np.zeros((n, n), dtype=np.int64)
    out[top : top + size, left : left + size] = label
    return out


def test_identical_inputs_score_perfectly() -> None:
    truth = square(1, 1, 4, label=1) + square(6, 6, 5, label=2)
    renamed = np.where(truth == 1, 7, np.where(truth == 2, 3, 0))  # same segments under other names
    assert pixel_error(truth > 0, renamed > 0) == 0.0
    assert rand_error(renamed, truth) == 0.0
    assert rand_error(renamed, truth, foreground_restricted=False) == 0.0
    assert dice(renamed, truth) == 1.0
    assert instance_f1(renamed, truth) == {"tp": 2, "fp": 0, "fn": 0, "f1": 1.0}
    assert dsb_average_precision(renamed, truth) == 1.0


def test_pixel_error_and_dice_hand_computed() -> None:
    pred = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    truth = np.array([[1, 0, 1, 0], [0, 0, 0, 0]])
    assert pixel_error(pred, truth) == pytest.approx(2 / 8)
    assert dice(pred, truth) == pytest.approx(2 * 1 / (2 + 2))


def test_label_segments_is_four_connected() -> None:
    mask = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    labels = label_segments(mask)
    assert labels.dtype == np.int64
    assert len(np.unique(labels[labels > 0])) == 2  # the diagonal touch does not join
    assert labels[1, 1] == labels[1, 2] != labels[0, 0]


def test_merge_of_two_cells_raises_rand_error_by_hand_computed_amount() -> None:
    # Two 4-pixel cells split by one membrane pixel; the prediction misses the membrane and merges them.
    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    merged = np.ones_like(truth)
    # Foreground pixels: n_ij = [[4, 4]], sum n^2 = 32, pred marginals 8^2 = 64, truth 4^2 + 4^2 = 32.
    # P = 1/2, R = 1, F = 2/3.
    assert rand_error(truth, truth) == 0.0
    assert rand_error(merged, truth) == pytest.approx(1 / 3)
    # The same merge found through label_segments on a missed membrane.
    assert rand_error(label_segments(merged), truth) == pytest.approx(1 / 3)
    # A split is the mirror case: P = 1, R = 1/2 on a single true cell cut in two.
    assert rand_error(truth, merged * (truth != 0)) == pytest.approx(1 / 3)


def test_foreground_restriction_ignores_true_background() -> None:
    truth = np.array([[1, 1, 0, 2, 2]])
    pred = np.array([[1, 1, 1, 2, 2]])  # differs only where the truth is background
    assert rand_error(pred, truth) == 0.0
    # Unrestricted: n = {(1,1): 2, (1,0): 1, (2,2): 2}, sum n^2 = 9; pred 3^2 + 2^2 = 13; truth 9. F = 9/11.
    assert rand_error(pred, truth, foreground_restricted=False) == pytest.approx(2 / 11)


def test_shifted_object_is_a_match_at_half_but_not_at_three_quarters() -> None:
    truth = square(2, 2, 5)
    pred = square(2, 3, 5)  # one column to the right: overlap 20, union 30, IoU 2/3
    iou = match_instances(pred, truth)
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(2 / 3)
    assert instance_f1(pred, truth, 0.5) == {"tp": 1, "fp": 0, "fn": 0, "f1": 1.0}
    assert instance_f1(pred, truth, 0.75) == {"tp": 0, "fp": 1, "fn": 1, "f1": 0.0}
    # IoU 2/3 exceeds 0.5, 0.55, 0.6, 0.65 (score 1 each) and fails the other six (score 0 each).
    assert dsb_average_precision(pred, truth) == pytest.approx(0.4)
    assert dsb_average_precision(pred, truth, thresholds=[0.5]) == 1.0


def test_matching_is_one_to_one_below_half() -> None:
    truth = np.array([[1, 1, 1, 1, 2, 2]])
    pred = np.ones_like(truth)  # IoU 4/6 with cell 1 and 2/6 with cell 2
    np.testing.assert_allclose(match_instances(pred, truth), [[4 / 6, 2 / 6]])
    assert instance_f1(pred, truth, 0.3) == {"tp": 1, "fp": 0, "fn": 1, "f1": pytest.approx(2 / 3)}


def test_greedy_matching_takes_the_best_pair_first() -> None:
    # pred 1 overlaps truth 1 (IoU 1/6) and truth 2 (IoU 3/4); pred 2 overlaps only truth 1 (IoU 1/4).
    # Pairing pred 1 with the first candidate (truth 1) would leave pred 2 unmatched; greedy by IoU matches both.
    truth = np.array([[2, 2, 2, 1, 1, 1, 0]])
    pred = np.array([[1, 1, 1, 1, 0, 2, 2]])
    np.testing.assert_allclose(match_instances(pred, truth), [[1 / 6, 3 / 4], [1 / 4, 0]])
    result = instance_f1(pred, truth, 0.1)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 0, 0)


def test_empty_inputs() -> None:
    empty = np.zeros((4, 4), dtype=np.int64)
    one = square(0, 0, 2, n=4)
    assert math.isnan(dice(empty, empty))
    assert dice(one, empty) == 0.0
    assert pixel_error(empty, empty) == 0.0
    assert math.isnan(instance_f1(empty, empty)["f1"])
    assert math.isnan(dsb_average_precision(empty, empty))
    assert match_instances(empty, one).shape == (0, 1)
    assert instance_f1(empty, one) == {"tp": 0, "fp": 0, "fn": 1, "f1": 0.0}
    assert instance_f1(one, empty) == {"tp": 0, "fp": 1, "fn": 0, "f1": 0.0}
    assert dsb_average_precision(one, empty) == 0.0
    assert math.isnan(rand_error(one, empty))  # no true foreground left to score
    # A prediction that is all membrane on true cells merges them all into label 0.
    assert rand_error(empty, one + 2 * square(2, 2, 2, n=4)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("fn", [pixel_error, rand_error, dice, match_instances, instance_f1, dsb_average_precision])
def test_shape_mismatch_raises(fn) -> None:
    with pytest.raises(ValueError, match=r"\(4, 4\) does not match truth shape \(4, 5\)"):
        fn(np.zeros((4, 4), dtype=np.int64), np.zeros((4, 5), dtype=np.int64))
