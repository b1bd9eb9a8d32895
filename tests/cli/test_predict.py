"""``unet-med predict`` end to end: geometry round trips, bad inputs, 2D bundles, and every bundle in bundles/."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from unet_med.cli import main
from unet_med.data import synthetic_volume
from unet_med.networks import UNet

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs").is_dir())
UNET = REPO / "bundles" / "unet"
RNG = np.random.default_rng(0)
# An oblique, LPS-like affine: permuted and flipped axes, anisotropic spacing, an offset origin.
AFFINE = np.array([[0.0, -1.1, 0.0, 40.0], [-0.9, 0.0, 0.0, 30.0], [0.0, 0.0, 2.6, -15.0], [0.0, 0.0, 0.0, 1.0]])


def volume(shape=(40, 44, 20), seed=0) -> np.ndarray:
    return synthetic_volume(shape, num_classes=3, seed=seed)[0]


# Done, with or without warnings: these synthetic volumes are smaller than the demo cases bundles/unet was trained
# on, and unlike the real bundles' training data, so the input check may warn (exit status 3).
DONE = (0, 3)


def predict(*args: str) -> int:
    return main(["predict", "--quiet", *args])


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or ".part" in p.name]


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_every_bundle_predicts_a_nifti_in_its_geometry(tmp_path, bundle):
    if not (bundle / "configs" / "metadata.json").is_file() or not (bundle / "models" / "model.pt").is_file():
        pytest.skip(f"{bundle.name} has no metadata.json or models/model.pt yet")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    fmt = meta["network_data_format"]["inputs"]["image"]
    classes = int(meta["network_data_format"]["outputs"]["pred"]["num_channels"])
    if len(fmt["spatial_shape"]) == 2:  # a microscopy bundle: an 8-bit PNG, then a stack of sections
        picture = (volume()[..., 10].T * 200).clip(0, 255).astype(np.uint8)  # (rows, columns) = (44, 40)
        Image.fromarray(picture).save(tmp_path / "cells.png")
        import tifffile

        tifffile.imwrite(tmp_path / "stack.tif", np.stack([picture] * 3), photometric="minisblack")
        for name in ("cells.png", "stack.tif"):
            assert predict("--bundle", str(bundle), "--input", str(tmp_path / name), "--output", str(tmp_path)) in DONE
        mask = np.asarray(Image.open(tmp_path / "cells_seg.png"))
        assert mask.shape == (44, 40)
        if "instances_min_size" not in (bundle / "configs" / "inference.json").read_text():
            assert set(np.unique(mask).tolist()) <= set(range(classes))
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "stack_seg.tif"), np.stack([mask] * 3))
        return
    channels = int(fmt["num_channels"])
    image = volume() if channels == 1 else np.stack([volume(seed=c) for c in range(channels)], -1)
    nib.save(nib.Nifti1Image(image, AFFINE), tmp_path / "case.nii.gz")
    assert predict("--bundle", str(bundle), "--input", str(tmp_path / "case.nii.gz"), "--output", str(tmp_path)) in DONE
    out = nib.load(tmp_path / "case_seg.nii.gz")
    assert out.shape == (40, 44, 20) and out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, AFFINE, atol=1e-5)
    assert set(np.unique(np.asarray(out.dataobj)).tolist()) <= set(range(classes))


def test_nrrd_and_probabilities_keep_itk_geometry(tmp_path):
    image = sitk.GetImageFromArray(volume((36, 30, 18)).transpose(2, 1, 0).copy())
    image.SetSpacing((1.3, 0.9, 2.2))
    image.SetOrigin((-50.0, 12.0, 7.5))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "scan.nrrd"))
    out_dir = tmp_path / "out"
    args = ("--bundle", str(UNET), "--input", str(tmp_path / "scan.nrrd"), "--output", str(out_dir))
    assert predict(*args, "--save-probabilities") in DONE
    for name, components in (("scan_seg.nrrd", 1), ("scan_prob.nrrd", 3)):
        out = sitk.ReadImage(str(out_dir / name))
        assert out.GetSize() == image.GetSize() and out.GetNumberOfComponentsPerPixel() == components
        np.testing.assert_allclose(out.GetSpacing(), image.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(out.GetOrigin(), image.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(out.GetDirection(), image.GetDirection(), atol=1e-6)
    probs = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "scan_prob.nrrd")))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-3)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "scan_seg.nrrd")))
    assert (mask == probs.argmax(-1)).mean() > 0.9  # linear vs nearest resampling differ at class borders


def test_dicom_series_gives_a_nifti_in_the_series_geometry(tmp_path):
    from tests.data.test_sitk_reader import write_dicom_series

    array = (volume((32, 30, 16)) * 0.5).astype(np.int16).transpose(2, 1, 0).copy()  # (z, y, x)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 3.0))
    image.SetOrigin((-12.5, 40.0, -100.0))
    write_dicom_series(image, tmp_path / "series_7", series_uid="1.2.826.0.1.3680043.2.1125.7")
    series = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "series_7")))
    assert predict("--bundle", str(UNET), "--input", str(tmp_path / "series_7"), "--output", str(tmp_path)) in DONE
    out = nib.load(tmp_path / "1.2.826.0.1.3680043.2.1125.7_seg.nii.gz")  # named by its SeriesInstanceUID
    assert out.shape == series.GetSize()
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(out.affine[:3, 3], lps_to_ras @ np.array(series.GetOrigin()), atol=1e-4)
    np.testing.assert_allclose(
        out.affine[:3, :3],
        lps_to_ras @ np.array(series.GetDirection()).reshape(3, 3) @ np.diag(series.GetSpacing()),
        atol=1e-5,
    )


def test_bad_cases_are_reported_and_the_rest_still_run(tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    good = nib.Nifti1Image(volume(), AFFINE)
    nib.save(good, inp / "a_good.nii.gz")
    (inp / "b_truncated.nii.gz").write_bytes((inp / "a_good.nii.gz").read_bytes()[:2000])
    nan = volume()
    nan[3, 4, 5], nan[6, 7, 8] = np.nan, np.inf
    nib.save(nib.Nifti1Image(nan, AFFINE), inp / "c_nan.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([volume(), volume()], -1), AFFINE), inp / "d_4d.nii.gz")
    nib.save(nib.Nifti1Image(volume()[:, :, 0].copy(), np.eye(4)), inp / "e_slice.nii.gz")
    Image.fromarray((RNG.random((40, 40)) * 255).astype(np.uint8)).save(inp / "f_picture.png")
    (inp / "g_garbage.nrrd").write_bytes(b"NRRD0004\nnot really\n")

    assert predict("--bundle", str(UNET), "--input", str(inp), "--output", str(out)) == 1
    err = capsys.readouterr().err
    summary = err[err.index("6 case(s) failed") :]
    assert "b_truncated.nii.gz: unreadable or truncated" in summary
    assert "c_nan.nii.gz: 1 NaN and 1 inf voxels" in summary
    assert "d_4d.nii.gz: a 4D image" in summary
    assert "e_slice.nii.gz: a 2D image" in summary
    assert "f_picture.png: a 2D image" in summary
    assert "g_garbage.nrrd: unreadable" in summary
    assert sorted(p.name for p in out.iterdir()) == ["a_good_seg.nii.gz", "qc.json"]  # nothing else, no temp files
    statuses = {c["output"]: c["status"] for c in json.loads((out / "qc.json").read_text())["cases"]}
    assert statuses["c_nan_seg.nii.gz"] == "failed" and statuses["a_good_seg.nii.gz"] in ("ok", "warning")


def test_missing_bundle_or_input_exits_2(tmp_path, capsys):
    assert predict("--bundle", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o")) == 2
    assert "unet-med predict:" in capsys.readouterr().err
    if not torch.cuda.is_available():
        args = ("--bundle", str(UNET), "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--device", "cuda")
        assert predict(*args) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def tiny_2d_bundle(root: Path, in_channels: int = 1) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = {
        "spatial_dims": 2,
        "in_channels": in_channels,
        "num_classes": 2,
        "patch_size": [32, 32],
        "network_def": {
            "_target_": "unet_med.networks.UNet",
            "spatial_dims": "@spatial_dims",
            "in_channels": "@in_channels",
            "out_channels": "@num_classes",
            "features": [4, 8],
        },
        "preprocessing": {
            "_target_": "unet_med.transforms.preprocessing",
            "keys": ["image"],
            "modality": "none",
            "pixdim": None,
            "orientation": None,
        },
    }
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    fmt = {"num_channels": in_channels, "spatial_shape": ["8*n", "8*n"]}
    meta = {
        "name": "tiny 2D",
        "network_data_format": {"inputs": {"image": fmt}, "outputs": {"pred": {"num_channels": 2}}},
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    torch.save(UNet(2, in_channels, 2, features=[4, 8]).state_dict(), root / "models" / "model.pt")
    return root


def test_2d_bundle_png_and_tiff_keep_their_size(tmp_path, capsys):
    import tifffile

    bundle = tiny_2d_bundle(tmp_path / "bundle")
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    Image.fromarray((RNG.random((45, 70)) * 255).astype(np.uint8)).save(inp / "cells.png")
    tifffile.imwrite(inp / "em.tif", (RNG.random((50, 36)) * 1000).astype(np.uint16))
    Image.fromarray((RNG.random((40, 40, 3)) * 255).astype(np.uint8)).save(inp / "rgb.png")
    args = ("--bundle", str(bundle), "--input", str(inp), "--output", str(out), "--mirror", "--trust-bundle-code")
    assert predict(*args) == 1  # a hand-made test bundle: not what the template makes
    assert np.asarray(Image.open(out / "cells_seg.png")).shape == (45, 70)
    assert tifffile.imread(out / "em_seg.tif").shape == (50, 36)
    assert "rgb.png: wrong channel count: 3 channels, the bundle expects 1" in capsys.readouterr().err
    assert not (out / "rgb_seg.png").exists() and not leftovers(out)


def demo_like(path: Path, spacing=(1.2, 1.2, 2.5), seed=0) -> None:
    """A volume like the demo cases bundles/unet was trained on (64x64x48, same generator), at ``spacing``."""
    nib.save(nib.Nifti1Image(synthetic_volume((64, 64, 48), num_classes=3, seed=seed)[0], np.diag([*spacing, 1])), path)


def test_inputs_unlike_the_training_data_are_warned_about_and_exit_3(tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    demo_like(inp / "a_like.nii.gz")
    assert main(["predict", "--bundle", str(UNET), "--input", str(inp / "a_like.nii.gz"), "--output", str(out)]) == 0
    assert "ok    a_like.nii.gz  64x64x48  ->" in capsys.readouterr().out

    demo_like(inp / "b_fine.nii.gz", spacing=(0.4, 0.4, 2.5))  # 3x finer in-plane than any training case
    assert main(["predict", "--bundle", str(UNET), "--input", str(inp / "b_fine.nii.gz"), "--output", str(out)]) == 3
    captured = capsys.readouterr()
    # the input's own size, then the grid the network ran on (the bundle resamples to 1.2 mm)
    assert "warn  b_fine.nii.gz  64x64x48 (ran on 22x22x48)  ->" in captured.out
    assert "input unlike the training data: spacing 0.40x0.40x2.50 mm, trained on 1.20x1.20x2.50 mm" in captured.out
    assert "1 case(s) unlike the training data" in captured.err
    cases = {c["output"]: c for c in json.loads((out / "qc.json").read_text())["cases"]}  # both runs' cases
    assert cases["a_like_seg.nii.gz"]["status"] == "ok" and cases["a_like_seg.nii.gz"]["input_check"]["warnings"] == []
    fine = cases["b_fine_seg.nii.gz"]
    assert fine["status"] == "warning" and fine["input_size"] == [64, 64, 48] and fine["grid"] == [22, 22, 48]
    spacing = next(c for c in fine["input_check"]["checks"] if c["name"] == "spacing")
    assert spacing["ok"] is False and spacing["value"] == [0.4, 0.4, 2.5] and spacing["expected"][0] == [0.8, 1.8]


def test_existing_outputs_are_refused_before_any_work_unless_overwrite(tmp_path, capsys):
    demo_like(tmp_path / "scan.nii.gz")
    args = ("--bundle", str(UNET), "--input", str(tmp_path / "scan.nii.gz"), "--output", str(tmp_path / "out"))
    assert predict(*args) == 0
    mask = tmp_path / "out" / "scan_seg.nii.gz"
    mask.write_bytes(b"an earlier patient's mask")
    capsys.readouterr()
    assert predict(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"unet-med predict: {mask} exists; give --overwrite to replace, or another --output"
    assert mask.read_bytes() == b"an earlier patient's mask"
    assert predict(*args, "--overwrite") == 0 and nib.load(mask).shape == (64, 64, 48)


def test_two_inputs_that_would_write_one_file_are_refused(tmp_path, capsys):
    demo_like(tmp_path / "scan.nii")
    demo_like(tmp_path / "scan.nii.gz")
    assert predict("--bundle", str(UNET), "--input", str(tmp_path), "--output", str(tmp_path / "out")) == 2
    assert "scan.nii and scan.nii.gz would both be written to" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def write_dicom_object(path: Path, modality: str) -> None:
    """A non-image DICOM object (RTSTRUCT, SR) with just the header a folder scan reads."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = {"RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3", "SR": "1.2.840.10008.5.1.4.1.1.88.11"}[modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.PatientName = modality, generate_uid(), "Doe^Jane"
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_a_patient_tree_is_searched_for_series_named_by_uid_without_itk_noise(tmp_path, capfd):
    from tests.data.test_sitk_reader import write_dicom_series

    root = tmp_path / "export"
    for k, patient in enumerate(("DOE_JANE", "ROE_RICHARD")):
        array = (volume((32, 30, 16), seed=k) * 0.5).astype(np.int16).transpose(2, 1, 0).copy()
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 3.0))
        write_dicom_series(image, root / patient / "CT" / "image", series_uid=f"1.2.826.0.1.3680043.2.1125.9.{k}")
        write_dicom_object(root / patient / "CT" / "mask" / "RS.dcm", "RTSTRUCT")
    write_dicom_object(root / "DOE_JANE" / "report" / "sr.dcm", "SR")
    (root / "DOE_JANE" / "notes").mkdir()
    (root / "DOE_JANE" / "notes" / "readme.txt").write_text("scanned twice")

    out = tmp_path / "out"
    assert main(["predict", "--bundle", str(UNET), "--input", str(root), "--output", str(out)]) in DONE
    assert sorted(p.name for p in out.iterdir()) == [
        "1.2.826.0.1.3680043.2.1125.9.0_seg.nii.gz",
        "1.2.826.0.1.3680043.2.1125.9.1_seg.nii.gz",
        "qc.json",
    ]
    err = capfd.readouterr().err  # the file descriptor: ITK prints from C++, past Python's sys.stderr
    assert "series  DOE_JANE/CT/image  (CT, 16 files)" in err and "series  ROE_RICHARD/CT/image  (CT, 16 files)" in err
    assert "skipped DOE_JANE/CT/mask: RTSTRUCT (contours) only, no image series" in err
    assert "skipped DOE_JANE/report: SR (a structured report) only, no image series" in err
    assert "skipped DOE_JANE/notes: no DICOM series or image file (1 other file(s))" in err
    assert "WARNING" not in err and "Doe^Jane" not in err and "nvImageCodec" not in err
    # a patient's folder alone: its series is found below it
    assert predict("--bundle", str(UNET), "--input", str(root / "ROE_RICHARD"), "--output", str(out)) == 2
    assert "1.2.826.0.1.3680043.2.1125.9.1_seg.nii.gz exists" in capfd.readouterr().err


def test_the_sarcoma_dicom_export_finds_its_ct_and_skips_its_rtstruct(shared_dir):
    from unet_med.inference.cases import discover_cases
    from unet_med.inference.output import output_path

    found = discover_cases(shared_dir / "data" / "SarcomaCT_DICOM")
    image = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT" / "image"
    assert found.cases == [image] and found.series[image] == "CT, 47 files"
    assert found.skipped == [(image.parent / "mask", "RTSTRUCT (contours) only, no image series")]
    name = output_path(image, "out").name
    assert name.startswith("1.") and name.endswith("_seg.nii.gz") and "STS" not in name and "image" not in name
