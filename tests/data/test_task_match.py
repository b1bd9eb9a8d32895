"""A dataset that contradicts the bundle's task (modality, channels, labels) is named before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_med.data import load_datalist
from unet_med.data.checks import check_dataset
from unet_med.data.task_match import TaskMismatchError, check_task_match, modality_family, task_mismatches

REFERENCE = {"modality": "mri", "in_channels": 1, "class_names": ["background", "organ", "lesion"]}


def _dataset_json(root: Path, **doc) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize(
    ("name", "family"),
    [("CT", "ct"), ("MRI", "mri"), ("T1", "mri"), ("FLAIR", "mri"), ("t1Gd", "mri"), ("EM", "microscopy"),
     ("image", None), ("PET", None)],
)  # fmt: skip
def test_modality_family(name, family):
    assert modality_family(name) == family


def test_a_fitting_dataset_has_no_mismatch(tmp_path):
    root = _dataset_json(tmp_path, modality={"0": "MRI"}, labels={"0": "background", "1": "a", "2": "b"})
    assert task_mismatches(root, **REFERENCE, found_values=(0, 1, 2)) == []
    check_task_match(root, **REFERENCE, found_values=(0, 1, 2))
    # a folder without dataset.json is judged by its label values alone
    assert task_mismatches(tmp_path / "plain", **REFERENCE, found_values=(0, 1, 2)) == []


def test_each_mismatch_is_named_in_one_line(tmp_path):
    root = _dataset_json(tmp_path, modality={"0": "CT", "1": "CT"}, labels={"0": "background", "1": "tumour"})
    with pytest.raises(TaskMismatchError) as err:
        check_task_match(root, **REFERENCE, found_values=(0, 1))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{root} does not fit this bundle's task: ")
    assert "dataset.json says modality CT, CT, the task is MRI" in message
    assert "dataset.json names 2 channel(s) (CT, CT), the task has 1" in message
    assert "dataset.json names 2 labels (background, tumour), the task has 3 classes" in message
    assert "no label holds class 2 (lesion), the values found are 0, 1" in message
    assert message.endswith("pass --allow_task_mismatch true to train on it anyway")


def test_unknown_channel_names_and_mapped_labels_are_not_judged(tmp_path):
    root = _dataset_json(tmp_path, modality={"0": "image"}, labels={"0": "background", "1": "membrane"})
    assert task_mismatches(root, **REFERENCE, found_values=(0, 255), label_values=[0, 255]) == []


def test_allow_logs_instead_of_raising(tmp_path, caplog):
    root = _dataset_json(tmp_path, modality={"0": "CT"})
    check_task_match(root, **REFERENCE, found_values=(0, 1, 2), allow=True)
    assert "modality CT, the task is MRI" in caplog.text and "allow_task_mismatch" in caplog.text


def test_sarcoma_ct_contradicts_the_reference_mri_task(shared_dir):
    data = shared_dir / "data" / "SarcomaCT"
    if not (data / "dataset.json").is_file():
        pytest.skip(f"SarcomaCT not found in {data.parent}")
    found = check_dataset(load_datalist(data), num_classes=3, in_channels=1)
    problems = task_mismatches(data, **REFERENCE, found_values=found)
    assert found == (0, 1) and len(problems) == 3 and problems[0] == "dataset.json says modality CT, the task is MRI"
    assert (
        task_mismatches(data, modality="ct", in_channels=1, class_names=["background", "tumour"], found_values=found)
        == []
    )
