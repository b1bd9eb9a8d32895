"""K-fold cross-validation splits by case, stratified on what each case's label holds.

A fold split assigns every case to exactly one validation fold. Cases are grouped by a *signature* (by default
the set of label values present in the case's label file, so cases with and without a lesion are spread over the
folds evenly); each group is shuffled with the seed and dealt round-robin over the folds, continuing from where
the previous group stopped, so fold sizes differ by at most one. Cases without a label file (or whose label cannot
be read; the dataset check reports those) share one group, which makes the split plain seeded K-fold.

Example::

    cases = load_datalist("/data/Task04_Hippocampus")
    training, validation = fold_split(cases, fold=2, num_folds=5, seed=0)
    assign_folds(["a", "a", "b", "b", "b"], num_folds=2, seed=0)  # e.g. [1, 0, 1, 0, 1]
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from unet_med.data.datalist import DatasetError
from unet_med.data.readers import read_array

__all__ = ["assign_folds", "fold_split", "label_signature"]


def label_signature(item: dict[str, Any], label_key: str = "label", instances: bool = False) -> Hashable | None:
    """What a case's label holds: the sorted label values present (``(0, 1)``, ``(0, 1, 2)``), or for instance
    maps whether it has any object. ``None`` when the case has no readable label."""
    path = item.get(label_key)
    if not isinstance(path, str):
        return None
    try:
        data, _ = read_array(path)
    except (OSError, ValueError):
        return None
    if instances:
        return (bool(np.any(data > 0)),)
    return tuple(int(v) for v in np.unique(np.rint(data).astype(np.int64)))


def assign_folds(signatures: Sequence[Hashable | None], num_folds: int, seed: int = 0) -> list[int]:
    """The validation fold of each case, stratified by ``signatures`` (one per case) and stable under ``seed``.

    Raises:
        DatasetError: fewer cases than folds.
        ValueError: ``num_folds`` below 2.
    """
    n = len(signatures)
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    if n < num_folds:
        raise DatasetError(f"{num_folds}-fold cross-validation needs at least {num_folds} cases, got {n}")
    groups: dict[str, list[int]] = {}
    for i, signature in enumerate(signatures):
        groups.setdefault(repr(signature), []).append(i)
    rng = random.Random(seed)
    folds = [0] * n
    position = rng.randrange(num_folds)
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for i in members:
            folds[i] = position % num_folds
            position += 1
    return folds


def fold_split(
    items: Sequence[dict[str, Any]],
    fold: int,
    num_folds: int = 5,
    seed: int = 0,
    stratify: bool = True,
    instances: bool = False,
    blocks: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fold ``fold`` of a seeded, stratified ``num_folds``-fold split: ``(training, validation)``, each in the order
    the cases had in ``items`` (shallow copies).

    Args:
        items: the cases (``{"image": ..., "label": ...}``).
        fold: the validation fold, ``0 .. num_folds - 1``.
        num_folds: number of folds.
        seed: seed of the split; the same cases and seed give the same folds.
        stratify: group cases by :func:`label_signature` (reads every label once); else plain seeded K-fold.
        instances: labels are instance maps (the signature is then only "has objects").
        blocks: folds are contiguous blocks of ``items`` in their order (sizes differ by at most one), not drawn
            at random: for serial sections or slices of one volume, whose neighbours are near copies and would
            otherwise sit on both sides of a split (``seed`` and ``stratify`` are then unused).

    Raises:
        ValueError: ``fold`` outside ``0 .. num_folds - 1``.
        DatasetError: fewer cases than folds.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1}, got {fold}")
    if blocks:
        if len(items) < num_folds:
            raise DatasetError(f"{num_folds}-fold cross-validation needs at least {num_folds} cases, got {len(items)}")
        folds = [i * num_folds // len(items) for i in range(len(items))]
    else:
        signatures = [label_signature(item, instances=instances) if stratify else None for item in items]
        folds = assign_folds(signatures, num_folds, seed)
    training = [dict(item) for item, f in zip(items, folds) if f != fold]
    validation = [dict(item) for item, f in zip(items, folds) if f == fold]
    return training, validation
