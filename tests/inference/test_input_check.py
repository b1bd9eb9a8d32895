"""The input check against a task's training fingerprint: each rule, the shipped fingerprints, and real scans."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import LoadImage

from unet_med.bundle.task import load_task
from unet_med.data.fingerprint import image_summary
from unet_med.data.sitk_reader import SITKReader
from unet_med.inference.input_check import check_input, loaded_channels

REPO = Path(__file__).resolve().parents[2]

FINGERPRINT = {
    "num_cases": 10,
    "channels": 1,
    "spacing": {"min": [0.8, 0.8, 2.0], "max": [1.0, 1.0, 3.0]},
    "extent": {"min": [150.0, 150.0, 100.0], "max": [300.0, 300.0, 200.0]},
    "intensity": [
        {"p00_5": [-1000.0, -950.0], "p50": [-100.0, 50.0], "p99_5": [400.0, 1200.0], "median_position": [0.4, 0.6]}
    ],
}
LIKE = {
    "channels": 1,
    "spacing": [0.9, 0.9, 2.5],
    "extent": [200.0, 220.0, 150.0],
    "intensity": [{"p00_5": -990.0, "p50": 0.0, "p99_5": 800.0, "median_position": 0.5}],
}


def changed(path: str, value) -> dict:
    summary = copy.deepcopy(LIKE)
    *keys, last = path.split(".")
    target = summary
    for key in keys:
        target = target[int(key)] if key.isdigit() else target[key]
    target[last] = value
    return summary


def test_an_input_like_the_training_data_passes_every_check():
    result = check_input(LIKE, FINGERPRINT, "ct", ["CT"])
    assert result.warnings == []
    names = [c["name"] for c in result.checks]
    assert names == ["channels", "spacing", "extent", "CT median_position", "CT p00_5", "CT p50", "CT p99_5"]
    assert all(c["ok"] for c in result.checks)


@pytest.mark.parametrize(
    ("path", "value", "warning"),
    [
        ("spacing", [0.5, 0.5, 2.5], "spacing 0.50x0.50x2.50 mm, trained on 0.80x0.80x2.00 to 1.00x1.00x3.00 mm"),
        ("spacing", [0.9, 0.9, 5.0], "spacing 0.90x0.90x5.00 mm"),
        ("extent", [200.0, 220.0, 450.0], "field of view 200x220x450 mm, trained on 150x150x100 to 300x300x200 mm"),
        ("extent", [60.0, 220.0, 150.0], "field of view 60x220x150 mm"),
        ("intensity.0.median_position", 0.1, "CT intensity median at 0.10 of its range, trained on 0.40 to 0.60"),
        ("intensity.0.p50", -600.0, "CT 50th percentile -600 HU, trained on -100 to 50 HU (+-220)"),
        ("intensity.0.p99_5", 100.0, "CT 99.5th percentile 100 HU"),
        ("channels", 2, "2 channels, trained on 1"),
    ],
)
def test_each_rule_warns_outside_its_tolerance(path, value, warning):
    result = check_input(changed(path, value), FINGERPRINT, "ct", ["CT"])
    assert len(result.warnings) == 1 and result.warnings[0].startswith(warning)
    assert next(c["name"] for c in result.checks if not c["ok"]).endswith(path.split(".")[-1])


def test_tolerances_accept_values_just_inside():
    inside = changed("spacing", [0.8 / 1.45, 1.0, 3.0 * 1.45])
    inside["extent"] = [150.0 / 1.9, 300.0 * 1.9, 100.0]
    inside["intensity"][0]["median_position"] = 0.4 - 0.14
    assert check_input(inside, FINGERPRINT, "ct").warnings == []


def test_absolute_intensities_are_checked_for_ct_only():
    far = changed("intensity.0.p50", 5000.0)  # MRI units are arbitrary: only the median's position counts
    assert check_input(far, FINGERPRINT, "mri").warnings == []
    assert check_input(far, FINGERPRINT, "ct").warnings != []


def test_a_fingerprint_without_geometry_checks_intensities_only():
    pictures = {k: v for k, v in FINGERPRINT.items() if k not in ("spacing", "extent")}
    summary = {k: v for k, v in changed("intensity.0.median_position", 0.9).items() if k not in ("spacing", "extent")}
    result = check_input(summary, pictures, "microscopy", ["EM"])
    assert [c["name"] for c in result.checks] == ["channels", "EM median_position"]
    assert result.warnings[0].startswith("EM intensity median at 0.90") and "an unusual histogram" in result.warnings[0]


def _check_file(bundle: str, path: Path) -> list[str]:
    """The check ``unet-med predict`` makes, on the image as its loader returns it."""
    task = load_task(REPO / "bundles" / bundle)
    loader = LoadImage(image_only=True)
    loader.register(SITKReader())
    image = loader(str(path))
    summary = image_summary(loaded_channels(image), np.asarray(image.affine), task["spatial_dims"])
    return check_input(summary, task["fingerprint"], task["modality"], task["channels"]).warnings


@pytest.mark.parametrize(
    ("bundle", "dataset", "cases"),
    [
        # the smallest and largest crops, the metal (3071 HU) one, the lowest and highest median positions
        ("sarcoma_ct", "SarcomaCT/imagesTr", ["STS_002", "STS_019", "STS_020", "STS_007"]),
        # uint8 (maximum 112) and float (maximum 1.7e6) intensities, the lowest median position
        ("hippocampus_mri", "Task04_Hippocampus/imagesTr", ["hippocampus_172", "hippocampus_210", "hippocampus_056"]),
    ],
)
def test_training_cases_pass_their_bundles_check(shared_dir, bundle, dataset, cases):
    folder = shared_dir / "data" / dataset
    for f in (folder / f"{c}.nii.gz" for c in cases):
        assert _check_file(bundle, f) == [], f.name


def test_microscopy_training_pictures_pass_their_bundles_check(shared_dir):
    em = sorted((shared_dir / "data" / "ISBI2012EM" / "train" / "image").iterdir())
    nuclei = sorted((shared_dir / "data" / "DSB2018Nuclei" / "images").iterdir())
    for bundle, files in (("em_membranes", em[:: len(em) // 3]), ("nuclei_fluorescence", nuclei[:: len(nuclei) // 3])):
        for f in files:
            assert _check_file(bundle, f) == [], f.name


def test_the_dicom_series_of_a_training_case_passes(shared_dir):
    assert _check_file("sarcoma_ct", shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT" / "image") == []


def test_a_chest_ct_warns_for_the_sarcoma_bundle(shared_dir):
    warnings = _check_file("sarcoma_ct", shared_dir / "data" / "LungCTNrrd" / "lung1_image.nrrd")
    assert any(w.startswith("spacing 0.57x0.57x5.00 mm, trained on 0.98x0.98x3.27 mm") for w in warnings)


def test_a_whole_brain_warns_for_the_hippocampus_bundle(shared_dir):
    mni = next((shared_dir / "data" / "MNI152").glob("*_t1_*.nii*"))
    warnings = _check_file("hippocampus_mri", mni)
    assert any(w.startswith("field of view 197x233x189 mm") for w in warnings)
    assert any(w.startswith("T1 intensity median at 0.00") and "mostly background" in w for w in warnings)


@pytest.mark.parametrize("bundle", sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs").is_dir()))
def test_every_shipped_bundle_keeps_a_fingerprint(bundle):
    task = load_task(REPO / "bundles" / bundle)
    fp = task["fingerprint"]
    assert fp["num_cases"] >= 4 and fp["channels"] == len(task["channels"])
    assert ("spacing" in fp) == (task["spatial_dims"] == 3)
