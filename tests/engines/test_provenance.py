"""What a checkpoint records about its data and task, and the one-line refusal of a mismatch."""

from __future__ import annotations

import shutil

import pytest

from unet_med.engines.provenance import CheckpointMismatchError, check_record, dataset_fingerprint, training_record
from unet_med.utils import UsageError

TASK = {"class_names": ["background", "organ"], "modality": "mri", "pixdim": [1.0, 1.0, 1.0]}


def _datalist(root, sizes=(10, 20, 30)):
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i, size in enumerate(sizes):
        for kind in ("img", "lbl"):
            (root / f"{kind}_{i}.nii.gz").write_bytes(b"x" * size)
        items.append({"image": str(root / f"img_{i}.nii.gz"), "label": str(root / f"lbl_{i}.nii.gz")})
    return {"training": items[:-1], "validation": items[-1:]}


def test_fingerprint_follows_the_cases_not_their_folder_or_order(tmp_path):
    datalist = _datalist(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = {
        part: [{k: p.replace("/a/", "/b/") for k, p in c.items()} for c in cases] for part, cases in datalist.items()
    }
    reordered = {"training": datalist["training"][::-1], "validation": datalist["validation"]}
    assert dataset_fingerprint(datalist) == dataset_fingerprint(moved) == dataset_fingerprint(reordered)
    assert dataset_fingerprint(datalist) != dataset_fingerprint(_datalist(tmp_path / "c", sizes=(10, 20, 31)))
    swapped = {"training": datalist["validation"] + datalist["training"][1:], "validation": datalist["training"][:1]}
    assert dataset_fingerprint(datalist) != dataset_fingerprint(swapped)


def test_a_matching_record_passes_and_a_mismatch_is_one_line(tmp_path):
    datalist = _datalist(tmp_path / "a")
    record = training_record(datalist, TASK)
    check_record(record, training_record(datalist, dict(reversed(TASK.items()))), "last.pt")
    other_task = training_record(datalist, {**TASK, "modality": "ct"})
    with pytest.raises(CheckpointMismatchError, match=r"another task \(modality 'mri' then, 'ct' now\)") as err:
        check_record(record, other_task, "last.pt")
    assert isinstance(err.value, UsageError) and "\n" not in str(err.value)
    other_data = training_record(_datalist(tmp_path / "b", sizes=(1, 2, 3, 4)), TASK)
    with pytest.raises(CheckpointMismatchError, match=r"other data \(2 training and 1 validation cases.*\(3 and 1"):
        check_record(record, other_data, "last.pt")
