"""Metrics for 2D microscopy segmentation: ISBI 2012 pixel and Rand error, Dice, instance F1, DSB 2018 AP.

Plain numpy/scipy functions on single images (no engine code), for the microscopy bundles' evaluation scripts.
Two kinds of input appear:

* binary masks (any dtype; nonzero is foreground): :func:`pixel_error`, :func:`dice`;
* label maps (integers; 0 is background, each other value one segment or instance): :func:`rand_error`,
  :func:`match_instances`, :func:`instance_f1`, :func:`dsb_average_precision`. For membrane (EM) data the
  segments are the connected components of the cell-interior mask, see :func:`label_segments`.

Definitions:

* ISBI 2012 (Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms for
  connectomics", Front. Neuroanat. 2015): the pixel error is the fraction of pixels where the binary prediction
  and truth differ; the foreground-restricted Rand error is ``1 - F`` where ``F`` is the Rand F-score computed
  from the contingency table ``n_ij`` of predicted segments ``i`` against true segments ``j`` over the pixels
  whose true label is not background: ``P = sum n_ij^2 / sum_i a_i^2`` and ``R = sum n_ij^2 / sum_j b_j^2`` with
  ``a_i`` and ``b_j`` the row and column sums, and ``F = 2PR / (P + R)``. Predicted label 0 counts as one segment
  like any other.
* Kaggle 2018 Data Science Bowl (Caicedo et al., "Nucleus segmentation across imaging experiments", Nat. Methods
  2019): a predicted object is a true positive at threshold ``t`` when it matches a true object with IoU
  ``> t``; the score is the mean over ``t`` in 0.5, 0.55, ..., 0.95 of ``TP / (TP + FP + FN)``.

Matching is one-to-one. For thresholds ``>= 0.5`` the match is unique (two objects cannot both overlap a third by
more than half of their union); below that, pairs are taken greedily by descending IoU.

Empty inputs follow the convention of :mod:`unet_med.engines.case_metrics`: where there is nothing to score
(both masks empty for Dice, no objects on either side for F1/AP, no true foreground for the restricted Rand
error) the result is NaN, not a reward of 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "dice",
    "dsb_average_precision",
    "instance_f1",
    "label_segments",
    "match_instances",
    "pixel_error",
    "rand_error",
]

#: IoU thresholds of the 2018 Data Science Bowl metric: 0.5, 0.55, ..., 0.95.
DSB_THRESHOLDS: np.ndarray = np.round(np.arange(0.5, 1.0, 0.05), 2)


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match truth shape {truth.shape}")
    return pred, truth


def pixel_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels where the binary masks ``pred`` and ``truth`` differ (ISBI 2012 pixel error).

    Nonzero is foreground. An empty (size 0) pair scores NaN.
    """
    pred, truth = _check_pair(pred, truth)
    if pred.size == 0:
        return float("nan")
    return float(np.mean((pred != 0) != (truth != 0)))


def label_segments(mask: np.ndarray) -> np.ndarray:
    """Connected components of a binary mask (nonzero is foreground), 4-connected in 2D (face-connected in nD).

    Returns an ``int64`` label map: 0 for background, 1..n for the components.
    """
    mask = np.asarray(mask) != 0
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    labels, _ = ndimage.label(mask, structure=structure)
    return np.asarray(labels, dtype=np.int64)


def _contingency(pred_labels: np.ndarray, truth_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency table ``n[i, j]`` of the values of two same-shape arrays, with their sorted unique values."""
    pred_values, p = np.unique(pred_labels.ravel(), return_inverse=True)
    truth_values, t = np.unique(truth_labels.ravel(), return_inverse=True)
    n_p, n_t = len(pred_values), len(truth_values)
    counts = np.bincount(p.ravel() * n_t + t.ravel(), minlength=n_p * n_t).reshape(n_p, n_t)
    return counts, pred_values, truth_values


def rand_error(pred_labels: np.ndarray, truth_labels: np.ndarray, foreground_restricted: bool = True) -> float:
    """ISBI 2012 Rand error: ``1 -`` the Rand F-score of the segmentation ``pred_labels`` against ``truth_labels``.

    With ``foreground_restricted`` (the challenge's metric) pixels whose true label is 0 (membrane/background) are
    left out; otherwise every pixel counts and label 0 is a segment on both sides. See the module docstring for
    the formula. Returns 0 for identical segmentations (up to renaming labels) and NaN when no pixel is left.
    """
    pred_labels, truth_labels = _check_pair(pred_labels, truth_labels)
    if foreground_restricted:
        keep = truth_labels != 0
        pred_labels, truth_labels = pred_labels[keep], truth_labels[keep]
    if pred_labels.size == 0:
        return float("nan")
    counts, _, _ = _contingency(pred_labels, truth_labels)
    counts = counts.astype(np.float64)
    sum_nij2 = float(np.sum(counts**2))
    precision = sum_nij2 / float(np.sum(counts.sum(axis=1) ** 2))
    recall = sum_nij2 / float(np.sum(counts.sum(axis=0) ** 2))
    return 1.0 - 2.0 * precision * recall / (precision + recall)


def dice(pred_mask: np.ndarray, truth_mask: np.ndarray) -> float:
    """Dice ``2 |P & T| / (|P| + |T|)`` of two binary masks (nonzero is foreground); NaN if both are empty."""
    pred_mask, truth_mask = _check_pair(pred_mask, truth_mask)
    pred, truth = pred_mask != 0, truth_mask != 0
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def match_instances(pred_labels: np.ndarray, truth_labels: np.ndarray) -> np.ndarray:
    """IoU matrix of shape ``(n_pred, n_truth)`` between the nonzero labels of two instance label maps.

    Rows follow the sorted nonzero predicted labels, columns the sorted nonzero true labels.
    """
    pred_labels, truth_labels = _check_pair(pred_labels, truth_labels)
    counts, pred_values, truth_values = _contingency(pred_labels, truth_labels)
    overlap = counts[pred_values != 0][:, truth_values != 0].astype(np.float64)
    pred_area = counts.sum(axis=1)[pred_values != 0].astype(np.float64)
    truth_area = counts.sum(axis=0)[truth_values != 0].astype(np.float64)
    union = pred_area[:, None] + truth_area[None, :] - overlap
    # Every object has area >= 1, so the union is never 0.
    return np.asarray(overlap / union if overlap.size else overlap)


def _count_matches(iou: np.ndarray, threshold: float) -> int:
    """One-to-one matches with IoU ``> threshold``, taken greedily by descending IoU (unique for thresholds >= 0.5)."""
    rows, cols = np.nonzero(iou > threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
    return len(used_rows)


def instance_f1(pred_labels: np.ndarray, truth_labels: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level detection counts and F1 ``2 TP / (2 TP + FP + FN)`` at IoU ``> iou_threshold``.

    Returns ``{"tp", "fp", "fn", "f1"}``; ``f1`` is NaN when neither map has an object.
    """
    iou = match_instances(pred_labels, truth_labels)
    n_pred, n_truth = iou.shape
    tp = _count_matches(iou, iou_threshold)
    fp, fn = n_pred - tp, n_truth - tp
    denominator = 2 * tp + fp + fn
    f1 = 2.0 * tp / denominator if denominator else float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1}


def dsb_average_precision(
    pred_labels: np.ndarray, truth_labels: np.ndarray, thresholds: Sequence[float] | np.ndarray = DSB_THRESHOLDS
) -> float:
    """2018 Data Science Bowl score: mean over ``thresholds`` of ``TP(t) / (TP(t) + FP(t) + FN(t))``.

    A prediction is a TP at ``t`` when matched one-to-one to a true object with IoU ``> t``. NaN when neither map
    has an object.
    """
    iou = match_instances(pred_labels, truth_labels)
    n_pred, n_truth = iou.shape
    if n_pred + n_truth == 0:
        return float("nan")
    scores = []
    for t in np.asarray(thresholds, dtype=np.float64).ravel():
        tp = _count_matches(iou, float(t))
        scores.append(tp / (n_pred + n_truth - tp))
    return float(np.mean(scores))
