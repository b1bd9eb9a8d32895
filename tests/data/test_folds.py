"""Cross-validation folds: every case validated exactly once, stable under a seed, stratified by label content."""

from __future__ import annotations

from collections import Counter

import nibabel as nib
import numpy as np
import pytest

from unet_med.data.datalist import DatasetError
from unet_med.data.folds import assign_folds, fold_split, label_signature

CASES = [{"image": f"case_{i:02d}.nii.gz"} for i in range(11)]  # no labels: plain seeded K-fold


@pytest.mark.parametrize("num_folds", [2, 5])
def test_folds_cover_every_case_exactly_once(num_folds):
    seen = []
    for fold in range(num_folds):
        training, validation = fold_split(CASES, fold, num_folds, seed=0)
        assert validation and len(training) + len(validation) == len(CASES)
        assert not {c["image"] for c in training} & {c["image"] for c in validation}
        seen += [c["image"] for c in validation]
    assert sorted(seen) == sorted(c["image"] for c in CASES)
    sizes = Counter(assign_folds([None] * len(CASES), num_folds, seed=0)).values()
    assert max(sizes) - min(sizes) <= 1


def test_folds_are_stable_under_a_seed_and_differ_for_another():
    assert assign_folds([None] * 20, 5, seed=3) == assign_folds([None] * 20, 5, seed=3)
    assert assign_folds([None] * 20, 5, seed=3) != assign_folds([None] * 20, 5, seed=4)


def test_folds_are_stratified_by_signature():
    signatures = [(0, 1)] * 5 + [(0, 1, 2)] * 5  # five cases with a lesion, five without
    folds = assign_folds(signatures, 5, seed=1)
    for fold in range(5):
        members = [s for s, f in zip(signatures, folds) if f == fold]
        assert sorted(members) == [(0, 1), (0, 1, 2)]


def test_label_signature_reads_the_values_present(tmp_path):
    data = np.zeros((4, 4, 4), np.uint8)
    data[1, 1, 1] = 2
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "l.nii.gz")
    item = {"image": "x", "label": str(tmp_path / "l.nii.gz")}
    assert label_signature(item) == (0, 2)
    assert label_signature(item, instances=True) == (True,)
    assert label_signature({"image": "x", "label": str(tmp_path / "missing.nii.gz")}) is None


def test_bad_fold_arguments():
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.4"):
        fold_split(CASES, 5, 5)
    with pytest.raises(DatasetError, match="at least 20 cases"):
        assign_folds([None] * 11, 20)
    with pytest.raises(ValueError, match="num_folds must be >= 2"):
        assign_folds([None] * 11, 1)


def test_block_folds_are_contiguous_runs_of_the_order_and_cover_every_case_once():
    validation = [[c["image"] for c in fold_split(CASES, k, 5, blocks=True)[1]] for k in range(5)]
    assert [name for fold in validation for name in fold] == [c["image"] for c in CASES]  # in order, once each
    assert [len(v) for v in validation] == [3, 2, 2, 2, 2]
    training, held = fold_split(CASES, 1, 5, blocks=True, seed=7)
    assert [c["image"] for c in held] == ["case_03.nii.gz", "case_04.nii.gz"]  # the seed does not move a block
    assert len(training) == 9
    with pytest.raises(DatasetError, match="at least 5"):
        fold_split(CASES[:3], 0, 5, blocks=True)
