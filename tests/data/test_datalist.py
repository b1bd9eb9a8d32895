"""Tests for unet_med.data.datalist: MSD and paired-folder layouts, splits, and the datalist JSON round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet_med.data.checks import check_dataset
from unet_med.data.datalist import (
    DatasetError,
    channel_names_from_dataset_json,
    labels_from_dataset_json,
    load_datalist,
    read_datalist,
    split_datalist,
    write_datalist,
)

SHARED_DATA = Path(os.environ.get("UNET_MED_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SHAPE = (8, 8, 8)


def save(path: Path, shape: tuple[int, ...] = SHAPE, dtype: type = np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype), np.eye(4)), path)
    return path


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj))


@pytest.fixture()
def msd(tmp_path: Path) -> Path:
    """An MSD folder: case a is a list of two single-channel files, case b one 4D two-channel file."""
    save(tmp_path / "imagesTr" / "a_flair.nii.gz")
    save(tmp_path / "imagesTr" / "a_t1c.nii.gz")
    save(tmp_path / "imagesTr" / "b.nii.gz", (*SHAPE, 2))
    (tmp_path / "imagesTr" / "._b.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    for name in ("a", "b"):
        save(tmp_path / "labelsTr" / f"{name}.nii.gz", dtype=np.uint8)
    meta = {
        "modality": {"0": "FLAIR", "1": "T1c"},
        "labels": {"0": "background", "1": "tumour"},
        "training": [
            {"image": ["./imagesTr/a_flair.nii.gz", "./imagesTr/a_t1c.nii.gz"], "label": "./labelsTr/a.nii.gz"},
            {"image": "./imagesTr/b.nii.gz", "label": "./labelsTr/b.nii.gz"},
        ],
        "test": ["./imagesTs/c.nii.gz"],
    }
    write_json(tmp_path / "dataset.json", meta)
    return tmp_path


def test_msd_channel_list_and_4d(msd: Path) -> None:
    items = load_datalist(msd)
    assert items == [
        {
            "image": [str(msd / "imagesTr" / "a_flair.nii.gz"), str(msd / "imagesTr" / "a_t1c.nii.gz")],
            "label": str(msd / "labelsTr" / "a.nii.gz"),
        },
        {"image": str(msd / "imagesTr" / "b.nii.gz"), "label": str(msd / "labelsTr" / "b.nii.gz")},
    ]
    check_dataset(items, num_classes=2, in_channels=2)  # both ways of giving two channels count as two
    assert labels_from_dataset_json(msd) == {0: "background", 1: "tumour"}
    assert channel_names_from_dataset_json(msd / "dataset.json") == ["FLAIR", "T1c"]


def test_msd_relative_dir_gives_absolute_paths(msd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(msd.parent)
    items = load_datalist(msd.name)
    assert all(Path(item["label"]).is_absolute() and "./" not in item["label"] for item in items)


def test_msd_entry_without_label(msd: Path) -> None:
    meta = json.loads((msd / "dataset.json").read_text())
    meta["training"].append({"image": "./imagesTr/c.nii.gz"})
    write_json(msd / "dataset.json", meta)
    with pytest.raises(DatasetError, match=r"1 images have no 'label': \./imagesTr/c\.nii\.gz"):
        load_datalist(msd)


def test_msd_custom_keys(tmp_path: Path) -> None:
    write_json(tmp_path / "dataset.json", {"training": [{"img": "x.nii.gz", "seg": "y.nii.gz", "id": 7}]})
    items = load_datalist(tmp_path, image_key="img", label_key="seg")
    assert items == [{"img": str(tmp_path / "x.nii.gz"), "seg": str(tmp_path / "y.nii.gz"), "id": 7}]


@pytest.mark.parametrize(
    ("content", "match"), [("{not json", "cannot read JSON"), ('{"training": []}', "'training' list is empty")]
)
def test_msd_bad_dataset_json(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(DatasetError, match=match) as info:
        load_datalist(tmp_path)
    assert str(tmp_path / "dataset.json") in str(info.value)


def test_paired_folders_with_nnunet_channels(tmp_path: Path) -> None:
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    for name in ("a_0000", "a_0001", "b_0000", "c"):
        save(images / f"{name}.nii.gz")
    (images / "._a_0000.nii.gz").write_bytes(b"junk")
    (images / ".DS_Store").write_bytes(b"junk")
    (images / "notes.txt").write_text("not an image")
    for name in ("a", "b", "c"):
        save(labels / f"{name}.nii.gz", dtype=np.uint8)
    (labels / "._a.nii.gz").write_bytes(b"junk")
    items = load_datalist(tmp_path)
    assert items == [
        {"image": [str(images / "a_0000.nii.gz"), str(images / "a_0001.nii.gz")], "label": str(labels / "a.nii.gz")},
        {"image": str(images / "b_0000.nii.gz"), "label": str(labels / "b.nii.gz")},
        {"image": str(images / "c.nii.gz"), "label": str(labels / "c.nii.gz")},
    ]


def test_four_digit_case_names_are_not_channels(tmp_path: Path) -> None:
    for name in ("img_0001", "img_0002"):
        save(tmp_path / "images" / f"{name}.nii", (8, 8))
        save(tmp_path / "labels" / f"{name}.nii.gz", (8, 8), np.uint8)  # stems match across .nii and .nii.gz
    items = load_datalist(tmp_path)
    assert [Path(item["image"]).name for item in items] == ["img_0001.nii", "img_0002.nii"]
    check_dataset(items, num_classes=2, in_channels=1, spatial_dims=2)


def test_paired_png(tmp_path: Path) -> None:
    from PIL import Image

    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / folder / "cell.png")
    items = load_datalist(tmp_path)
    assert items == [{"image": str(tmp_path / "images" / "cell.png"), "label": str(tmp_path / "labels" / "cell.png")}]
    check_dataset(items, num_classes=2, in_channels=1, spatial_dims=2)


def test_nnunet_v2_dataset_json_uses_folders(tmp_path: Path) -> None:
    save(tmp_path / "imagesTr" / "x_0000.nii.gz")
    save(tmp_path / "labelsTr" / "x.nii.gz", dtype=np.uint8)
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}
    write_json(tmp_path / "dataset.json", meta)
    assert load_datalist(tmp_path) == [
        {"image": str(tmp_path / "imagesTr" / "x_0000.nii.gz"), "label": str(tmp_path / "labelsTr" / "x.nii.gz")}
    ]
    assert labels_from_dataset_json(tmp_path) == {0: "background", 1: "liver"}
    assert channel_names_from_dataset_json(tmp_path) == ["CT"]


def test_images_without_labels_are_named(tmp_path: Path) -> None:
    for name in ("a", "b_0000", "c"):
        save(tmp_path / "imagesTr" / f"{name}.nii.gz")
    save(tmp_path / "labelsTr" / "a.nii.gz", dtype=np.uint8)
    with pytest.raises(DatasetError, match="2 images have no label") as info:
        load_datalist(tmp_path)
    assert "b_0000.nii.gz" in str(info.value) and "c.nii.gz" in str(info.value)


def test_channel_gap(tmp_path: Path) -> None:
    save(tmp_path / "imagesTr" / "a_0000.nii.gz")
    save(tmp_path / "imagesTr" / "a_0002.nii.gz")
    save(tmp_path / "labelsTr" / "a.nii.gz", dtype=np.uint8)
    with pytest.raises(DatasetError, match=r"a has channels \[0, 2\]"):
        load_datalist(tmp_path)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found") as info:
        load_datalist(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "._junk").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty"):
        load_datalist(empty)
    odd = tmp_path / "odd"
    save(odd / "scans" / "a.nii.gz")
    with pytest.raises(DatasetError, match=r"unrecognised dataset layout.*found scans"):
        load_datalist(odd)
    half = tmp_path / "half"
    save(half / "imagesTr" / "a.nii.gz")
    with pytest.raises(DatasetError, match="found imagesTr/ but no labelsTr/"):
        load_datalist(half)
    nothing = tmp_path / "nothing"
    (nothing / "imagesTr").mkdir(parents=True)
    (nothing / "labelsTr").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        load_datalist(nothing)


def test_labels_and_channels_absent_or_bad(tmp_path: Path) -> None:
    assert labels_from_dataset_json(tmp_path) is None
    assert channel_names_from_dataset_json(tmp_path) is None
    write_json(tmp_path / "dataset.json", {"modality": {"0": "T1", "2": "T2"}, "labels": {"tumour": [1, 2]}})
    with pytest.raises(DatasetError, match=r"0\.\.1"):
        channel_names_from_dataset_json(tmp_path)
    with pytest.raises(DatasetError, match="region labels"):
        labels_from_dataset_json(tmp_path)


# ---- split ----------------------------------------------------------------------------------------------------


def cases(n: int) -> list[dict[str, str]]:
    return [{"image": f"/d/{i}.nii.gz", "label": f"/d/{i}_seg.nii.gz"} for i in range(n)]


def test_split_is_deterministic_and_complete() -> None:
    items = cases(20)
    training, validation = split_datalist(items, seed=3)
    assert (training, validation) == split_datalist(items, seed=3)
    assert validation != split_datalist(items, seed=4)[1]
    assert len(validation) == 4 and len(training) == 16
    assert sorted(c["image"] for c in training + validation) == sorted(c["image"] for c in items)
    assert training == [c for c in items if c in training]  # original order kept


@pytest.mark.parametrize(
    ("n", "kwargs", "sizes"),
    [
        (2, {}, (1, 1)),
        (3, {"val_fraction": 0.01}, (2, 1)),
        (5, {"val_fraction": 0.99}, (1, 4)),
        (10, {"num_val": 3}, (7, 3)),
    ],
)
def test_split_sizes(n: int, kwargs: dict, sizes: tuple[int, int]) -> None:
    training, validation = split_datalist(cases(n), **kwargs)
    assert (len(training), len(validation)) == sizes


def test_split_errors() -> None:
    with pytest.raises(DatasetError, match="at least 2 cases"):
        split_datalist(cases(1))
    with pytest.raises(ValueError, match="num_val"):
        split_datalist(cases(4), num_val=4)
    with pytest.raises(ValueError, match="val_fraction"):
        split_datalist(cases(4), val_fraction=1.0)


# ---- datalist JSON --------------------------------------------------------------------------------------------


def test_write_read_round_trip(msd: Path, tmp_path: Path) -> None:
    items = load_datalist(msd)
    outside = {"image": "/elsewhere/z.nii.gz", "label": "/elsewhere/z_seg.nii.gz", "case": "z"}
    path = write_datalist(msd / "datalist.json", items[:1], [items[1], outside], num_classes=2)
    raw = json.loads(path.read_text())
    assert raw["training"][0]["image"] == ["imagesTr/a_flair.nii.gz", "imagesTr/a_t1c.nii.gz"]
    assert raw["validation"][1] == outside  # not under the JSON's folder: kept absolute
    assert raw["num_classes"] == 2
    back = read_datalist(path)
    assert back["training"] == items[:1] and back["validation"] == [items[1], outside]
    moved = read_datalist(path, base_dir=tmp_path / "copy")
    assert moved["validation"][0]["label"] == str(tmp_path / "copy" / "labelsTr" / "b.nii.gz")


def test_write_outside_dataset_keeps_absolute_paths(msd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = load_datalist(msd)
    path = write_datalist(msd / "splits" / "datalist.json", items, [])
    assert json.loads(path.read_text())["training"] == items  # ../ paths are not written
    monkeypatch.chdir(msd)
    relative = [{"image": "imagesTr/b.nii.gz", "label": "labelsTr/b.nii.gz"}]  # taken from the current folder
    assert read_datalist(write_datalist(msd / "splits" / "d.json", relative, relative))["training"] == items[1:]


def test_datalist_is_monai_compatible(msd: Path) -> None:
    from monai.data import load_decathlon_datalist

    items = load_datalist(msd)
    path = write_datalist(msd / "datalist.json", items, items[1:])
    assert load_decathlon_datalist(path, is_segmentation=True, data_list_key="validation") == items[1:]


def test_datalist_errors(tmp_path: Path) -> None:
    write_json(tmp_path / "bad.json", {"validation": []})
    with pytest.raises(DatasetError, match="no 'training' list"):
        read_datalist(tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="file not found"):
        read_datalist(tmp_path / "missing.json")


# ---- real data ------------------------------------------------------------------------------------------------


def test_shared_msd_metadata() -> None:
    hippocampus, brats = SHARED_DATA / "Task04_Hippocampus", SHARED_DATA / "BraTS2013"
    if not (hippocampus.is_dir() and brats.is_dir()):
        pytest.skip(f"shared data sets not found under {SHARED_DATA}")
    items = load_datalist(hippocampus)
    assert len(items) == 208 and all(Path(item["image"]).is_file() for item in items)
    assert labels_from_dataset_json(hippocampus) == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert channel_names_from_dataset_json(brats) == ["FLAIR", "T1c"]
    assert labels_from_dataset_json(brats) is not None and len(labels_from_dataset_json(brats)) == 5
