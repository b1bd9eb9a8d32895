"""Tests for unet_med.data.synthetic: generators, and the MSD-style folders they are written to."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from unet_med.data import synthetic
from unet_med.data.synthetic import make_demo_dataset_2d, make_demo_dataset_3d, synthetic_image_2d, synthetic_volume

SMALL_3D = (32, 32, 24)
SMALL_2D = (64, 64)
GENERATORS = {2: (synthetic_image_2d, SMALL_2D), 3: (synthetic_volume, SMALL_3D)}


def _files(root: Path) -> dict[str, int]:
    """Relative path -> mtime (ns) of every file under ``root``."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- generators


@pytest.mark.parametrize("dims", [2, 3])
def test_same_seed_same_arrays_other_seed_differs(dims):
    fn, shape = GENERATORS[dims]
    image, label = fn(shape, seed=5)
    image2, label2 = fn(shape, seed=5)
    np.testing.assert_array_equal(image, image2)
    np.testing.assert_array_equal(label, label2)
    image3, label3 = fn(shape, seed=6)
    assert not np.array_equal(image, image3)
    assert not np.array_equal(label, label3)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_shapes_dtypes_and_every_class_present(dims, num_classes):
    fn, shape = GENERATORS[dims]
    for seed in range(3):
        image, label = fn(shape, num_classes=num_classes, seed=seed)
        assert image.shape == label.shape == shape
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert np.isfinite(image).all()
        assert sorted(np.unique(label).tolist()) == list(range(num_classes))


def test_default_shapes():
    image, label = synthetic_volume()
    assert image.shape == label.shape == (64, 64, 48)
    image, label = synthetic_image_2d()
    assert image.shape == label.shape == (256, 256)


def test_2d_image_range_and_classes_brighter_than_background():
    image, label = synthetic_image_2d(SMALL_2D, seed=1)
    assert 0.0 <= image.min() and image.max() <= 1.0
    means = [image[label == k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]


def test_3d_intensities_random_per_case_and_ordered_by_class():
    scales = []
    for seed in range(3):
        image, label = synthetic_volume(SMALL_3D, seed=seed)
        means = [float(np.median(image[label == k])) for k in range(3)]
        assert means[1] < means[2]
        assert np.median(image[label == 0]) < means[1]
        scales.append(means[1])
    assert max(scales) / min(scales) > 1.2  # the global scale differs between cases


def test_3d_lesion_inside_or_touching_organ():
    for seed in range(5):
        _, label = synthetic_volume(SMALL_3D, seed=seed)
        grown = ndimage.binary_dilation(label == 2, iterations=1)
        assert (label[grown] == 1).any()


@pytest.mark.parametrize(
    "kwargs",
    [{"shape": (64, 64)}, {"shape": (8, 64, 64)}, {"num_classes": 1}, {"num_classes": 9}, {"seed": -1}],
)
def test_3d_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic_volume(**kwargs)


@pytest.mark.parametrize("kwargs", [{"shape": (64, 64, 8)}, {"shape": (16, 64)}, {"num_classes": 0}])
def test_2d_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic_image_2d(**kwargs)


# ------------------------------------------------------------------------------------------------- 3D folders


@pytest.fixture(scope="module")
def set_3d(tmp_path_factory) -> Path:
    return make_demo_dataset_3d(tmp_path_factory.mktemp("s3") / "ds", num_cases=3, shape=SMALL_3D, seed=0)


def test_3d_dataset_json_lists_existing_files(set_3d):
    meta = json.loads((set_3d / "dataset.json").read_text())
    assert meta["tensorImageSize"] == "3D"
    assert meta["modality"] == {"0": "synthetic MRI"}
    assert meta["labels"] == {"0": "background", "1": "organ", "2": "lesion"}
    assert meta["numTraining"] == len(meta["training"]) == 3
    assert meta["training"][0] == {"image": "./imagesTr/case_000.nii.gz", "label": "./labelsTr/case_000.nii.gz"}
    for entry in meta["training"]:
        assert (set_3d / entry["image"]).is_file() and (set_3d / entry["label"]).is_file()
    assert len(list((set_3d / "imagesTr").iterdir())) == len(list((set_3d / "labelsTr").iterdir())) == 3


def test_3d_files_geometry(set_3d):
    spacing = (1.2, 1.2, 2.5)
    affines = []
    for name in ("case_000", "case_001", "case_002"):
        img = nib.load(set_3d / "imagesTr" / f"{name}.nii.gz")
        lab = nib.load(set_3d / "labelsTr" / f"{name}.nii.gz")
        assert img.shape == lab.shape == SMALL_3D
        assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.affine, lab.affine)
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
        np.testing.assert_allclose(img.header.get_zooms(), spacing, rtol=1e-6)
        np.testing.assert_allclose(lab.header.get_zooms(), spacing, rtol=1e-6)
        assert int(img.header["qform_code"]) > 0 and int(img.header["sform_code"]) > 0
        np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
        # a small rotation away from pure LPS, and a non-zero origin
        direction = img.affine[:3, :3] / np.asarray(spacing)
        angle = np.degrees(np.arccos(np.clip((np.trace(np.diag([-1.0, -1.0, 1.0]) @ direction) - 1) / 2, -1, 1)))
        assert 2.5 < angle < 10.5
        assert np.linalg.norm(img.affine[:3, 3]) > 1.0
        data = np.asarray(img.dataobj)
        assert np.isfinite(data).all()
        assert sorted(np.unique(np.asarray(lab.dataobj)).tolist()) == [0, 1, 2]
        affines.append(img.affine)
    assert not np.allclose(affines[0], affines[1])  # pose of the scan differs per case


def test_3d_readable_by_monai_datalist(set_3d):
    from monai.data import load_decathlon_datalist

    items = load_decathlon_datalist(set_3d / "dataset.json", data_list_key="training", base_dir=set_3d)
    assert len(items) == 3 and all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)


def test_3d_deterministic_across_folders_and_seeds(tmp_path):
    a = make_demo_dataset_3d(tmp_path / "a", num_cases=2, shape=SMALL_3D, seed=3)
    b = make_demo_dataset_3d(tmp_path / "b", num_cases=2, shape=SMALL_3D, seed=3)
    c = make_demo_dataset_3d(tmp_path / "c", num_cases=2, shape=SMALL_3D, seed=4)
    for sub in ("imagesTr/case_001.nii.gz", "labelsTr/case_001.nii.gz"):
        np.testing.assert_array_equal(nib.load(a / sub).get_fdata(), nib.load(b / sub).get_fdata())
        np.testing.assert_array_equal(nib.load(a / sub).affine, nib.load(b / sub).affine)
        assert not np.array_equal(nib.load(a / sub).get_fdata(), nib.load(c / sub).get_fdata())
    first = nib.load(a / "labelsTr/case_000.nii.gz").get_fdata()
    assert not np.array_equal(first, nib.load(a / "labelsTr/case_001.nii.gz").get_fdata())


def test_3d_second_call_does_not_rewrite_and_changed_parameter_regenerates(tmp_path):
    out = tmp_path / "ds"
    assert make_demo_dataset_3d(out, num_cases=3, shape=SMALL_3D) == out
    before = _files(out)
    assert ".synthetic.json" in before and "dataset.json" in before
    assert make_demo_dataset_3d(str(out), num_cases=3, shape=SMALL_3D) == out
    assert _files(out) == before

    make_demo_dataset_3d(out, num_cases=2, shape=SMALL_3D)
    after = _files(out)
    assert "imagesTr/case_002.nii.gz" not in after  # the old set is gone, not merged
    assert after["imagesTr/case_000.nii.gz"] != before["imagesTr/case_000.nii.gz"]
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    assert json.loads((out / ".synthetic.json").read_text())["num_cases"] == 2

    make_demo_dataset_3d(out, num_cases=2, shape=SMALL_3D, spacing=(1.0, 1.0, 3.0))
    assert nib.load(out / "imagesTr/case_000.nii.gz").header.get_zooms() == pytest.approx((1.0, 1.0, 3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary or old folders left behind


def test_3d_incomplete_set_is_regenerated(tmp_path):
    out = make_demo_dataset_3d(tmp_path / "ds", num_cases=2, shape=SMALL_3D)
    (out / "labelsTr/case_001.nii.gz").unlink()
    make_demo_dataset_3d(out, num_cases=2, shape=SMALL_3D)
    assert (out / "labelsTr/case_001.nii.gz").is_file()


def test_interrupted_run_leaves_previous_set_and_no_partial_folder(tmp_path, monkeypatch):
    out = make_demo_dataset_3d(tmp_path / "ds", num_cases=2, shape=SMALL_3D)
    before = _files(out)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return synthetic_volume(*args, **kwargs)

    monkeypatch.setattr(synthetic, "synthetic_volume", failing)
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset_3d(out, num_cases=3, shape=SMALL_3D)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset_3d(tmp_path / "new", num_cases=3, shape=SMALL_3D)
    assert not (tmp_path / "new").exists()


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_demo_dataset_3d(tmp_path / "mine", num_cases=1, shape=SMALL_3D)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    make_demo_dataset_3d(tmp_path / "empty_ok", num_cases=1, shape=SMALL_3D)  # an empty folder is fine
    assert (tmp_path / "empty_ok" / "dataset.json").is_file()


def test_3d_bad_dataset_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_demo_dataset_3d(tmp_path / "x", num_cases=0)
    with pytest.raises(ValueError):
        make_demo_dataset_3d(tmp_path / "x", spacing=(1.0, 0.0, 1.0))
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------- 2D folders


def test_2d_png_round_trip(tmp_path):
    out = make_demo_dataset_2d(tmp_path / "png", num_cases=2, shape=SMALL_2D, seed=0)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["tensorImageSize"] == "2D" and meta["numTraining"] == 2
    for entry in meta["training"]:
        assert entry["image"].endswith(".png") and entry["label"].endswith(".png")
        with Image.open(out / entry["image"]) as im, Image.open(out / entry["label"]) as lb:
            assert im.mode == lb.mode == "L"
            image, label = np.asarray(im), np.asarray(lb)
        assert image.shape == label.shape == SMALL_2D
        assert sorted(np.unique(label).tolist()) == [0, 1, 2]
        assert image.max() > 100 and image[label == 2].mean() > image[label == 0].mean() + 50
    image, label = synthetic_image_2d(SMALL_2D, seed=synthetic._case_seed(0, 0))
    with Image.open(out / "imagesTr/case_000.png") as im, Image.open(out / "labelsTr/case_000.png") as lb:
        np.testing.assert_array_equal(np.asarray(lb), label)
        np.testing.assert_allclose(np.asarray(im) / 255.0, image, atol=0.5 / 255 + 1e-6)


def test_2d_tif_round_trip_is_16_bit(tmp_path):
    out = make_demo_dataset_2d(tmp_path / "tif", num_cases=2, shape=SMALL_2D, num_classes=4, fmt="tif", seed=1)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"]["3"] == "structure_3"
    for entry in meta["training"]:
        image, label = tifffile.imread(out / entry["image"]), tifffile.imread(out / entry["label"])
        assert image.dtype == np.uint16 and label.dtype == np.uint8
        assert image.shape == label.shape == SMALL_2D
        assert image.max() > 255  # uses the 16-bit range
        assert sorted(np.unique(label).tolist()) == [0, 1, 2, 3]


def test_2d_idempotent_and_format_change_regenerates(tmp_path):
    out = make_demo_dataset_2d(tmp_path / "ds", num_cases=2, shape=SMALL_2D)
    before = _files(out)
    make_demo_dataset_2d(out, num_cases=2, shape=SMALL_2D)
    assert _files(out) == before
    make_demo_dataset_2d(out, num_cases=2, shape=SMALL_2D, fmt="tif")
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["case_000.tif", "case_001.tif"]
    with pytest.raises(ValueError):
        make_demo_dataset_2d(tmp_path / "y", fmt="jpg")
