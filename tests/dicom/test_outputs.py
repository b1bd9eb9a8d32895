"""DICOM series in, DICOM SEG and RTSTRUCT out: ``unet-med predict --format`` and a bundle's ``output_format``."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from tests.dicom.dicom_checks import dciodvfy_errors, segimage2itkimage
from tests.dicom.make_series import write_series
from unet_med.cli import main
from unet_med.data import synthetic_volume
from unet_med.dicom import read_series, rtstruct_to_labels
from unet_med.dicom.outputs import parse_formats

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"
DONE = (0, 3)  # every case predicted; 3: some unlike the training data (a tiny synthetic series is)


def predict(*args: str) -> int:
    return main(["predict", "--quiet", *args])


def _series(folder: Path, seed: int = 0, **kwargs) -> Path:
    image = (synthetic_volume((40, 44, 20), num_classes=3, seed=seed)[0] * 300).astype(np.int16)
    write_series(folder, image, spacing=(1.2, 1.1, 2.5), **kwargs)
    return folder


def _seg_on_series(path: Path, series) -> np.ndarray:
    seg = hd.seg.segread(path)
    frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in series.datasets], combine_segments=True)
    return np.transpose(frames, (2, 1, 0))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_parse_formats():
    assert parse_formats("nifti, dicom-seg,nifti") == ("nifti", "dicom-seg")
    with pytest.raises(ValueError, match="output format dicom: not one of nifti, dicom-seg, rtstruct"):
        parse_formats("dicom")


def test_predict_writes_seg_and_rtstruct_equal_to_the_nifti_mask(tmp_path):
    case = _series(tmp_path / "in" / "case_7", order=list(reversed(range(20))))
    out = tmp_path / "out"
    assert predict("--bundle", str(UNET), "--input", str(tmp_path / "in"), "--output", str(out),
                   "--format", "nifti,dicom-seg,rtstruct") in DONE  # fmt: skip
    name = read_series(case).series_uid  # a series is named by its UID, never by its (patient's) folder
    expected = sorted(f"{name}{end}" for end in ("_rtstruct.dcm", "_seg.dcm", "_seg.nii.gz"))
    assert sorted(p.name for p in out.iterdir()) == [*expected, "qc.json"]
    series = read_series(case)
    mask = np.asarray(nib.load(out / f"{name}_seg.nii.gz").dataobj)
    assert {1, 2} <= set(np.unique(mask).tolist())
    np.testing.assert_array_equal(_seg_on_series(out / f"{name}_seg.dcm", series), mask)
    seg = hd.seg.segread(out / f"{name}_seg.dcm")
    assert seg.get_segment_description(1).segmented_property_type.value == "91772007"  # the bundle's codes
    assert seg.SeriesDescription == "unet_med reference U-Net segmentation"
    contours = rtstruct_to_labels(out / f"{name}_rtstruct.dcm", series, {"organ": 1, "lesion": 2})
    for value in (1, 2):
        assert _dice(contours == value, mask == value) >= 0.97
    merged = segimage2itkimage(out / f"{name}_seg.dcm", tmp_path / "qi")  # dcmqi (3D Slicer's reader)
    import SimpleITK as sitk

    ct = sitk.ReadImage([str(f) for f in series.files])
    on_ct = sitk.Resample(sitk.ReadImage(str(merged)), ct, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(on_ct), (2, 1, 0)), mask)


def test_dicom_formats_need_a_series_and_a_coded_3d_class_bundle(tmp_path, capsys):
    inp = tmp_path / "in"
    good = read_series(_series(inp / "a_series")).series_uid
    nib.save(nib.Nifti1Image(synthetic_volume((40, 44, 20), num_classes=3)[0], np.eye(4)), inp / "b_scan.nii.gz")
    out = tmp_path / "out"
    assert predict("--bundle", str(UNET), "--input", str(inp), "--output", str(out), "--format", "dicom-seg") == 1
    err = capsys.readouterr().err
    assert "b_scan.nii.gz: --format dicom-seg needs a DICOM series folder as input" in err
    assert sorted(p.name for p in out.iterdir()) == [f"{good}_seg.dcm", "qc.json"]  # nothing for the refused case
    em = REPO / "bundles" / "em_membranes"
    assert predict("--bundle", str(em), "--input", str(inp), "--output", str(out), "--format", "rtstruct") == 2
    assert "needs a 3D bundle" in capsys.readouterr().err
    assert predict("--bundle", str(UNET), "--input", str(inp), "--output", str(out), "--format", "png") == 2


def test_several_series_in_one_folder_are_chosen_by_uid(tmp_path, capsys):
    folder = tmp_path / "export"
    _series(folder, series_uid="1.2.826.0.1.3680043.8.498.11")
    _series(tmp_path / "other", seed=1, series_uid="1.2.826.0.1.3680043.8.498.12")
    for path in (tmp_path / "other").iterdir():
        path.rename(folder / f"B{path.name}")
    out = tmp_path / "out"
    args = ["--bundle", str(UNET), "--input", str(folder), "--output", str(out), "--format", "dicom-seg"]
    assert predict(*args) == 1
    assert "2 image series in this folder, choose one with --series UID" in capsys.readouterr().err
    assert not out.exists() or [p.name for p in out.iterdir()] == ["qc.json"]  # no result for the refused case
    assert predict(*args, "--series", "1.2.826.0.1.3680043.8.498.12") in DONE
    seg = hd.seg.segread(out / "1.2.826.0.1.3680043.8.498.12_seg.dcm")  # named by the chosen series
    source = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert source == "1.2.826.0.1.3680043.8.498.12"


def test_bundle_inference_config_writes_seg_with_output_format(tmp_path):
    case = _series(tmp_path / "in" / "case_3")
    out = tmp_path / "out"
    wf = ConfigWorkflow(
        config_file=str(UNET / "configs" / "inference.json"),
        meta_file=str(UNET / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        run_id="inferring",
        input=str(tmp_path / "in"),
        output_dir=str(out),
        output_format="dicom-seg",
        device="cpu",
    )
    wf.initialize()
    wf.run()
    name = read_series(case).series_uid
    assert [p.name for p in out.iterdir()] == [f"{name}_seg.dcm"]
    labels = _seg_on_series(out / f"{name}_seg.dcm", read_series(case))
    assert labels.shape == (40, 44, 20) and labels.any()


def test_sarcoma_seg_and_rtstruct_from_predict_are_valid_for_dciodvfy(tmp_path, shared_dir):
    """The shipped sarcoma bundle on the real STS_019 series: both objects pass the standard's validator."""
    case = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT" / "image"
    bundle = REPO / "bundles" / "sarcoma_ct"
    out = tmp_path / "out"
    args = ["--bundle", str(bundle), "--input", str(case), "--output", str(out), "--format", "nifti,dicom-seg,rtstruct"]
    assert predict(*args) == 0
    series = read_series(case)
    name = series.series_uid
    assert dciodvfy_errors(out / f"{name}_seg.dcm") == []
    assert dciodvfy_errors(out / f"{name}_rtstruct.dcm") == []
    mask = np.asarray(nib.load(out / f"{name}_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(_seg_on_series(out / f"{name}_seg.dcm", series), mask)
    assert _dice(rtstruct_to_labels(out / f"{name}_rtstruct.dcm", series) == 1, mask == 1) >= 0.97
