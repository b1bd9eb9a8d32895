"""Tests for unet_med.data.checks (and the readers it relies on): one planted defect at a time, then several."""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet_med.data.checks import DatasetError, check_dataset
from unet_med.data.datalist import load_datalist
from unet_med.data.readers import ImageReadError, read_array, read_header

SHARED_DATA = Path(os.environ.get("UNET_MED_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SHAPE = (8, 8, 8)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return str(path)


def make_case(root: Path, name: str, *, channels: int = 1, label_dtype: type = np.uint8) -> dict[str, str]:
    """A clean 8^3 case: a float32 image (4D when channels > 1) and a label with values 0..2."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    image = rng.normal(size=(*SHAPE, channels) if channels > 1 else SHAPE).astype(np.float32)
    label = rng.integers(0, 3, size=SHAPE).astype(label_dtype)
    return {
        "image": save_nifti(root / "imagesTr" / f"{name}.nii.gz", image),
        "label": save_nifti(root / "labelsTr" / f"{name}.nii.gz", label),
    }


def truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


# Each defect: (name, function planting it in a clean case and returning the file to be named, expected text).
def _missing(case: dict) -> str:
    os.remove(case["label"])
    return case["label"]


def _truncated(case: dict) -> str:
    truncate(case["image"])
    return case["image"]


def _shape(case: dict) -> str:
    save_nifti(Path(case["label"]), np.zeros((8, 8, 9), np.uint8))
    return case["image"]


def _affine(case: dict) -> str:
    shifted = np.eye(4)
    shifted[:3, 3] = (2.0, 0.0, 0.0)
    save_nifti(Path(case["label"]), np.zeros(SHAPE, np.uint8), shifted)
    return case["image"]


def _value5(case: dict) -> str:
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, 0] = 5
    save_nifti(Path(case["label"]), label)
    return case["label"]


def _fractional(case: dict) -> str:
    label = np.zeros(SHAPE, np.float32)
    label[1, 2, 3] = 0.5
    save_nifti(Path(case["label"]), label)
    return case["label"]


def _two_channels(case: dict) -> str:
    save_nifti(Path(case["image"]), np.zeros((*SHAPE, 2), np.float32))
    return case["image"]


def _nan(case: dict) -> str:
    image = np.zeros(SHAPE, np.float32)
    image[4, 4, 4] = np.nan
    save_nifti(Path(case["image"]), image)
    return case["image"]


def _two_d(case: dict) -> str:
    save_nifti(Path(case["image"]), np.zeros((8, 8), np.float32))
    return case["image"]


DEFECTS = {
    "missing file": (_missing, "file missing"),
    "truncated gz": (_truncated, "truncated"),
    "shape mismatch": (_shape, "spatial shape (8, 8, 8) differs from label shape (8, 8, 9)"),
    "affine mismatch": (_affine, "affine differs from the label's by up to 2"),
    "label value 5": (_value5, "values [5] outside 0..2 (num_classes=3)"),
    "float label 0.5": (_fractional, "non-integer values [0.5]"),
    "2 channels for 1": (_two_channels, "image has 2 channels, expected in_channels=1"),
    "NaN": (_nan, "image has 1 NaN and 0 infinite voxels"),
    "2D for 3D": (_two_d, "image is 2D (spatial shape (8, 8)), expected 3D"),
}


@pytest.fixture()
def cases(tmp_path: Path) -> list[dict[str, str]]:
    return [make_case(tmp_path, f"case_{i:03d}") for i in range(4)]


def test_clean_dataset_passes_and_returns_the_label_values_found(cases: list[dict[str, str]]) -> None:
    assert check_dataset(cases, num_classes=3, in_channels=1) == (0, 1, 2)
    assert check_dataset(cases, num_classes=3, in_channels=1, check_values=False) is None  # headers only


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_is_named(cases: list[dict[str, str]], defect: str) -> None:
    plant, expected = DEFECTS[defect]
    bad_file = plant(cases[2])
    with pytest.raises(DatasetError) as info:
        check_dataset(cases, num_classes=3, in_channels=1)
    message = str(info.value)
    assert message.splitlines()[0] == "1 of 4 cases has problems:"
    assert f"{bad_file}: " in message, message
    assert expected in message, message
    assert set(info.value.problems) == {2}
    assert isinstance(info.value, ValueError)


def test_all_defects_listed_in_one_error(tmp_path: Path) -> None:
    cases = [make_case(tmp_path, f"case_{i:03d}") for i in range(len(DEFECTS) + 3)]
    planted = {i: (plant(cases[i]), expected) for i, (plant, expected) in enumerate(DEFECTS.values())}
    with pytest.raises(DatasetError) as info:
        check_dataset(cases, num_classes=3, in_channels=1, num_workers=2)
    message = str(info.value)
    assert message.startswith(f"{len(DEFECTS)} of {len(cases)} cases have problems:\n")
    assert set(info.value.problems) == set(planted)
    for i, (bad_file, expected) in planted.items():
        assert f"case {i} (" in message
        assert any(bad_file in p and expected in p for p in info.value.problems[i]), (i, info.value.problems[i])
    for i in range(len(DEFECTS), len(cases)):  # the clean cases are not mentioned
        assert cases[i]["image"] not in message


def test_integral_float_labels_accepted(tmp_path: Path) -> None:
    cases = [make_case(tmp_path, f"f{i}", label_dtype=np.float32) for i in range(2)]
    check_dataset(cases, num_classes=3, in_channels=1)


def test_label_problems_listed_together(tmp_path: Path) -> None:
    case = make_case(tmp_path, "c")
    label = np.zeros(SHAPE, np.float32)
    label[0, 0, :3] = (0.25, 7.0, np.inf)
    save_nifti(Path(case["label"]), label)
    with pytest.raises(DatasetError) as info:
        check_dataset([case], num_classes=3, in_channels=1)
    problems = info.value.problems[0]
    assert any("1 NaN or infinite voxels" in p for p in problems)
    assert any("non-integer values [0.25]" in p for p in problems)
    assert any("values [7] outside 0..2" in p for p in problems)


def test_channel_list_counts_every_file(tmp_path: Path) -> None:
    case = make_case(tmp_path, "c")
    second = save_nifti(tmp_path / "imagesTr" / "c_t2.nii.gz", np.ones(SHAPE, np.float32))
    item = {"image": [case["image"], second], "label": case["label"]}
    check_dataset([item], num_classes=3, in_channels=2)
    with pytest.raises(DatasetError, match=r"channel list\): image has 2 channels, expected in_channels=1"):
        check_dataset([item], num_classes=3, in_channels=1)


def test_channel_files_must_share_geometry(tmp_path: Path) -> None:
    case = make_case(tmp_path, "c")
    odd = save_nifti(tmp_path / "imagesTr" / "c_t2.nii.gz", np.ones((8, 8, 7), np.float32))
    with pytest.raises(DatasetError) as info:
        check_dataset([{"image": [case["image"], odd], "label": case["label"]}], num_classes=3, in_channels=2)
    assert f"{odd}: image spatial shape (8, 8, 7) differs from label shape (8, 8, 8)" in str(info.value)


def test_4d_image_channels(tmp_path: Path) -> None:
    case = make_case(tmp_path, "c", channels=3)
    check_dataset([case], num_classes=3, in_channels=3)


def test_affine_tolerance(tmp_path: Path) -> None:
    case = make_case(tmp_path, "c")
    nudged = np.eye(4)
    nudged[0, 3] = 5e-4
    save_nifti(Path(case["label"]), np.zeros(SHAPE, np.uint8), nudged)
    check_dataset([case], num_classes=3, in_channels=1)
    with pytest.raises(DatasetError, match="affine differs"):
        check_dataset([case], num_classes=3, in_channels=1, affine_atol=1e-4)


def test_without_values_only_headers_are_read(tmp_path: Path) -> None:
    case = make_case(tmp_path, "c")
    truncate(case["image"])
    _value5({"label": case["label"]})
    check_dataset([case], num_classes=3, in_channels=1, check_values=False)  # header-only: neither is visible
    with pytest.raises(DatasetError, match="truncated"):
        check_dataset([case], num_classes=3, in_channels=1)


def test_missing_keys_and_2d_dataset(tmp_path: Path) -> None:
    image = save_nifti(tmp_path / "a.nii.gz", np.zeros((8, 8), np.float32))
    label = save_nifti(tmp_path / "a_label.nii.gz", np.ones((8, 8), np.uint8))
    check_dataset([{"image": image, "label": label}], num_classes=2, in_channels=1, spatial_dims=2)
    with pytest.raises(DatasetError) as info:
        check_dataset([{"image": image}, {"label": label}], num_classes=2, in_channels=1, spatial_dims=2)
    assert "no single 'label' path" in str(info.value)
    assert "no 'image' path" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1, "in_channels": 1}, "num_classes"),
        ({"num_classes": 2, "in_channels": 0}, "in_channels"),
        ({"num_classes": 2, "in_channels": 1, "spatial_dims": 4}, "spatial_dims must be 2 or 3, got 4"),
        ({"num_classes": 2, "in_channels": 1, "affine_atol": -1.0}, "affine_atol"),
    ],
)
def test_bad_arguments(cases: list[dict[str, str]], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_dataset(cases, **kwargs)


def test_empty_datalist() -> None:
    with pytest.raises(DatasetError, match="no cases"):
        check_dataset([], num_classes=2, in_channels=1)


# ---- readers --------------------------------------------------------------------------------------------------


def test_itk_formats_give_nibabel_affine(tmp_path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    theta = np.deg2rad(20.0)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, -1.2, 3.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    source = save_nifti(tmp_path / "ref.nii.gz", data, affine)
    for suffix in (".nrrd", ".mha"):
        target = tmp_path / f"ref{suffix}"
        sitk.WriteImage(sitk.ReadImage(source), str(target))
        info = read_header(target)
        loaded, loaded_affine = read_array(target)
        assert info.shape == (4, 5, 6) and info.channels == 1 and info.dtype == np.int16
        np.testing.assert_allclose(loaded_affine, nib.load(source).affine, atol=1e-5)
        np.testing.assert_allclose(info.spacing, (0.8, 1.2, 3.0), atol=1e-5)
        np.testing.assert_array_equal(loaded, data)


def test_2d_pictures(tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "grey.tif", rgb[..., 0])
    info = read_header(tmp_path / "rgb.png")
    assert (info.shape, info.channels, info.dtype) == ((6, 9), 3, np.uint8)
    np.testing.assert_array_equal(read_array(tmp_path / "rgb.png")[0], rgb)
    np.testing.assert_array_equal(info.affine, np.eye(4))
    grey = read_header(tmp_path / "grey.tif")
    assert (grey.shape, grey.channels) == ((6, 9), 1)


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "noise.nii.gz"
    bad.write_bytes(b"not a nifti file")
    with pytest.raises(ImageReadError, match=re.escape(str(bad))):
        read_header(bad)
    with pytest.raises(ValueError, match="unsupported image format"):
        read_header(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match=re.escape("gone.nii.gz")):
        read_header(tmp_path / "gone.nii.gz")


# ---- real data ------------------------------------------------------------------------------------------------


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data set {name} not found at {path}")
    return path


def test_hippocampus_passes() -> None:
    items = load_datalist(_shared("Task04_Hippocampus"))
    assert len(items) == 208
    check_dataset(items, num_classes=3, in_channels=1)
    with pytest.raises(DatasetError, match="208 of 208 cases have problems"):  # labels 1, 2 are out of 0..1
        check_dataset(items, num_classes=2, in_channels=1, check_values=True)


def test_brats_channel_list_and_float_labels() -> None:
    items = load_datalist(_shared("BraTS2013"))
    assert len(items) == 4 and all(len(item["image"]) == 2 for item in items)
    assert read_header(items[0]["label"]).dtype == np.float32
    check_dataset(items, num_classes=5, in_channels=2)


def test_lung_nrrd_is_ras() -> None:
    info = read_header(_shared("LungCTNrrd") / "lung1_image.nrrd")
    assert info.shape == (512, 512, 48)
    assert info.affine[0, 0] < 0 and info.affine[1, 1] < 0 and info.affine[2, 2] > 0  # LPS identity -> RAS


def _png(path: Path, array: np.ndarray) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def test_label_values_list_accepts_listed_values_only(tmp_path: Path) -> None:
    image = _png(tmp_path / "images" / "a.png", np.full((16, 16), 100, np.uint8))
    good = _png(tmp_path / "labels" / "a.png", np.where(np.eye(16) > 0, 0, 255).astype(np.uint8))
    check_dataset(
        [{"image": image, "label": good}], num_classes=2, in_channels=1, spatial_dims=2, label_values=[0, 255]
    )
    with pytest.raises(DatasetError, match=r"a\.png: label values"):
        check_dataset([{"image": image, "label": good}], num_classes=2, in_channels=1, spatial_dims=2)
    bad = _png(tmp_path / "labels" / "b.png", np.full((16, 16), 128, np.uint8))
    with pytest.raises(DatasetError, match=r"b\.png: label values \[128\] not among the expected \[0, 255\]"):
        check_dataset(
            [{"image": image, "label": bad}], num_classes=2, in_channels=1, spatial_dims=2, label_values=[0, 255]
        )


def test_instance_labels_accept_any_non_negative_id(tmp_path: Path) -> None:
    image = _png(tmp_path / "images" / "a.png", np.full((16, 16), 100, np.uint8))
    instances = np.zeros((16, 16), np.uint16)
    instances[2:6, 2:6], instances[8:12, 8:12] = 7, 300
    label = _png(tmp_path / "labels" / "a.png", instances)
    items = [{"image": image, "label": label}]
    check_dataset(items, num_classes=3, in_channels=1, spatial_dims=2, label_values="instances")
    with pytest.raises(DatasetError, match=r"outside 0\.\.2"):
        check_dataset(items, num_classes=3, in_channels=1, spatial_dims=2)
    with pytest.raises(ValueError, match="label_values"):
        check_dataset(items, num_classes=3, in_channels=1, spatial_dims=2, label_values="classes")
