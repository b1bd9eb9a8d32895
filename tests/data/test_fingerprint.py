"""Dataset fingerprint and planning."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from unet_med.data.fingerprint import fingerprint_dataset
from unet_med.data.planning import plan_from_fingerprint


def _dataset(root, affine, shape=(40, 36, 12), ct=False, cases=3):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(cases):
        image = np.full(shape, -1000.0 if ct else 0.0, np.float32)
        label = np.zeros(shape, np.uint8)
        label[10:20, 10:20, 4:8] = 1
        image[label == 1] = 40.0 + i
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    meta = {
        "modality": {"0": "CT" if ct else "MRI"},
        "labels": {"0": "background", "1": "tumour"},
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta))


def test_fingerprint_reports_ras_geometry_intensity_and_classes(tmp_path):
    affine = np.diag([-0.8, -0.8, 4.0, 1.0])  # LPS, thick slices
    _dataset(tmp_path, affine, ct=True)
    fp = fingerprint_dataset(tmp_path)
    assert fp["num_cases"] == 3
    assert fp["spacings"][0] == pytest.approx([0.8, 0.8, 4.0])
    assert fp["shapes"][0] == [40, 36, 12]
    assert fp["channel_names"] == ["CT"] and fp["class_names"] == ["background", "tumour"]
    assert fp["intensity"][0]["min"] >= 40.0  # foreground voxels only
    assert fp["class_fraction"]["1"] == pytest.approx(400 / (40 * 36 * 12))


def test_fingerprint_axes_follow_ras_for_permuted_files(tmp_path):
    affine = np.zeros((4, 4))
    affine[0, 2], affine[1, 0], affine[2, 1], affine[3, 3] = 3.0, 1.0, 1.5, 1.0  # array axis 2 is R-L
    _dataset(tmp_path, affine, shape=(20, 30, 10))
    fp = fingerprint_dataset(tmp_path)
    assert fp["spacings"][0] == pytest.approx([3.0, 1.0, 1.5])
    assert fp["shapes"][0] == [10, 20, 30]


def test_plan_for_anisotropic_ct():
    fp = {
        "spacings": [[0.8, 0.8, 4.0]] * 4 + [[0.7, 0.7, 2.5]],
        "shapes": [[200, 200, 40]] * 5,
        "channel_names": ["CT"],
        "intensity": [{"percentile_00_5": -120.0, "percentile_99_5": 180.0}],
        "class_names": ["background", "tumour"],
    }
    plan = plan_from_fingerprint(fp, max_patch_voxels=64**3)
    assert plan["pixdim"][:2] == [0.8, 0.8] and plan["pixdim"][2] < 4.0  # 10th percentile of the thick axis
    assert plan["modality"] == "ct" and plan["preprocessing#ct_window"] == [-120.0, 180.0]
    pools = plan["network_def#pool_sizes"]
    assert pools[0][2] == 1 and pools[0][:2] == [2, 2]  # the thick axis is not pooled first
    divisor = np.prod(pools, axis=0)
    assert all(p % d == 0 for p, d in zip(plan["patch_size"], divisor, strict=True))
    assert np.prod(plan["patch_size"]) <= 1.3 * 64**3
    assert len(plan["features"]) == len(pools) + 1 and plan["num_classes"] == 2


def test_plan_for_isotropic_mri():
    fp = {
        "spacings": [[1.0, 1.0, 1.0]] * 3,
        "shapes": [[36, 50, 35]] * 3,
        "channel_names": ["MRI"],
        "intensity": [{}],
        "class_names": ["background", "a", "b"],
    }
    plan = plan_from_fingerprint(fp)
    assert plan["modality"] == "mri" and "preprocessing#ct_window" not in plan
    assert plan["network_def#pool_sizes"] == [[2, 2, 2]] * 3
    assert plan["patch_size"] == [32, 48, 32]


def test_input_fingerprint_ranges_geometry_and_intensities_over_cases(tmp_path):
    from unet_med.data.fingerprint import input_fingerprint

    _dataset(tmp_path, np.diag([0.8, 0.8, 3.0, 1.0]), ct=True, cases=3)
    fp = input_fingerprint(tmp_path)
    assert fp["num_cases"] == 3 and fp["channels"] == 1
    assert fp["spacing"] == {"min": [0.8, 0.8, 3.0], "max": [0.8, 0.8, 3.0]}
    assert fp["extent"] == {"min": [32.0, 28.8, 36.0], "max": [32.0, 28.8, 36.0]}
    (stats,) = fp["intensity"]
    assert stats["p50"] == [-1000.0, -1000.0]  # the whole image, not only the labelled voxels
    assert stats["p99_5"][0] == 40.0 and stats["p99_5"][1] == 42.0  # one tumour value per case: 40, 41, 42
    assert stats["median_position"] == [0.0, 0.0]


def test_image_summary_of_pictures_has_no_geometry_and_is_scale_free():
    from unet_med.data.fingerprint import image_summary

    rng = np.random.default_rng(0)
    picture = rng.random((64, 48))
    summary = image_summary([picture, picture * 1000.0], np.eye(4), spatial_dims=2)
    assert "spacing" not in summary and "extent" not in summary and summary["channels"] == 2
    a, b = summary["intensity"]
    assert a["median_position"] == pytest.approx(b["median_position"]) and b["p50"] == pytest.approx(a["p50"] * 1000)
    big = rng.random((300, 300, 40)).astype(np.float32)  # 3.6 M voxels: percentiles from a regular subsample
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    summary = image_summary([big], affine, spatial_dims=3)
    assert summary["spacing"] == [0.5, 0.5, 2.0] and summary["extent"] == [150.0, 150.0, 80.0]
    assert summary["intensity"][0]["p50"] == pytest.approx(0.5, abs=0.01)
