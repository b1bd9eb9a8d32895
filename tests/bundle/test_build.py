"""Recording the training images' fingerprint in a bundle's task (``unet-med bundle fingerprint``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet_med.bundle.build import check_bundle
from unet_med.bundle.task import TaskError, validate_task
from unet_med.cli import main

REPO = Path(__file__).resolve().parents[2]


def msd_dataset(root: Path, channels: int = 1, cases: int = 3) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i in range(cases):
        shape = (20 + 4 * i, 24, 12)
        image = rng.normal(100.0, 20.0, (*shape, channels) if channels > 1 else shape).astype(np.float32)
        affine = np.diag([1.2, 1.2, 2.5, 1.0])
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), root / "labelsTr" / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background"}, "training": training}))
    return root


def test_fingerprint_command_adds_only_the_fingerprint_and_keeps_the_configs(tmp_path, capsys):
    bundle = tmp_path / "unet"
    shutil.copytree(REPO / "bundles" / "unet" / "configs", bundle / "configs")
    before = json.loads((bundle / "configs" / "task.json").read_text())
    before.pop("fingerprint", None)
    (bundle / "configs" / "task.json").write_text(json.dumps(before, indent=4) + "\n")
    data = msd_dataset(tmp_path / "data")

    assert main(["bundle", "fingerprint", str(bundle), "--dataset_dir", str(data)]) == 0
    assert "fingerprint of 3 case(s) recorded" in capsys.readouterr().out
    after = json.loads((bundle / "configs" / "task.json").read_text())
    fingerprint = after.pop("fingerprint")
    assert after == before and check_bundle(bundle) == []  # data only: no config changes
    assert fingerprint["num_cases"] == 3 and fingerprint["spacing"]["min"] == [1.2, 1.2, 2.5]
    assert fingerprint["extent"] == {"min": [24.0, 28.8, 30.0], "max": [33.6, 28.8, 30.0]}


def test_a_dataset_with_other_channels_is_refused(tmp_path, capsys):
    bundle = tmp_path / "unet"
    shutil.copytree(REPO / "bundles" / "unet" / "configs", bundle / "configs")
    task_before = (bundle / "configs" / "task.json").read_text()
    data = msd_dataset(tmp_path / "data", channels=2)
    assert main(["bundle", "fingerprint", str(bundle), "--dataset_dir", str(data)]) == 1
    assert "fingerprint: one intensity entry per channel (1)" in capsys.readouterr().err
    assert (bundle / "configs" / "task.json").read_text() == task_before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"intensity": [{"p00_5": [0, 1], "p50": "$import os", "p99_5": [0, 1], "median_position": [0, 1]}]}, "p50"),
        ({"spacing": {"min": [1.0, 1.0], "max": [1.0, 1.0]}}, "fingerprint.spacing: volumes only"),
        ({"extent": {"min": [10.0, 10.0, 10.0], "max": [5.0, 10.0, 10.0]}}, "fingerprint.extent: min above max"),
        ({"source": "/data/patients"}, "Additional properties are not allowed"),
    ],
)
def test_task_schema_keeps_the_fingerprint_data_only(change, message):
    task = json.loads((REPO / "bundles" / "unet" / "configs" / "task.json").read_text())
    task["fingerprint"] = {**task["fingerprint"], **change}
    with pytest.raises(TaskError, match="fingerprint") as e:
        validate_task(task)
    assert message in str(e.value)
