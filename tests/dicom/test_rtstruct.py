"""RTSTRUCT: contours that fill back to their mask, dciodvfy-clean; a real expert RTSTRUCT as a label map."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.config import RAISE, settings

from tests.dicom.dicom_checks import PHANTOM_CODES, SARCOMA_CODES, dciodvfy_errors
from tests.dicom.make_series import FRAME_UID, phantom, write_series
from unet_med.dicom import class_concepts, read_series, roi_masks, rtstruct_to_labels, slice_contours, write_rtstruct

CLASSES = ["background", "organ", "lesion"]
ALGORITHM = ("unet_med test U-Net", "1.2.3")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture
def strict_ds():
    """Read DS values the way a strict reader does: longer than 16 characters raises."""
    saved = settings.reading_validation_mode
    settings.reading_validation_mode = RAISE
    yield
    settings.reading_validation_mode = saved


@pytest.mark.parametrize("orientation", [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)])
def test_contours_fill_back_to_the_mask(tmp_path, orientation, strict_ds):
    image, labels = phantom()
    write_series(
        tmp_path / "ct", image, spacing=(0.7, 0.9, 2.5), orientation=orientation, order=[4, 1, 7, 0, 2, 6, 3, 5]
    )
    series = read_series(tmp_path / "ct")
    path = write_rtstruct(labels, series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "rs.dcm", ALGORITHM)
    ds = pydicom.dcmread(path)
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            assert all(len(str(v)) <= 16 for v in contour.ContourData)  # DS: at most 16 characters
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["organ", "lesion"]
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["ORGAN", "GTV"]
    assert ds.FrameOfReferenceUID == FRAME_UID and ds.SeriesInstanceUID != series.series_uid
    back = rtstruct_to_labels(path, series, {"organ": 1, "lesion": 2})
    for value in (1, 2):
        assert _dice(back == value, labels == value) >= 0.97
    np.testing.assert_array_equal(back, labels)  # vertices between voxel centres: the fill is exact


def test_holes_and_islands_per_slice():
    from unet_med.dicom.rtstruct_labels import _fill

    rng = np.random.default_rng(1)
    for k in range(20):
        mask = np.zeros((40, 50), dtype=bool)
        mask[3 + k % 5 : 20 + k, 7:44] = rng.random((17 + k - k % 5, 37)) > 0.6  # a noisy patch off the corner
        filled = np.zeros_like(mask)
        for contour in slice_contours(mask):
            filled ^= _fill(contour, mask.shape)
        np.testing.assert_array_equal(filled, mask)
    assert slice_contours(np.zeros((5, 5), dtype=bool)) == []


def test_contours_are_placed_by_position_not_uid(tmp_path):
    image, labels = phantom()
    write_series(tmp_path / "ct", image)
    series = read_series(tmp_path / "ct")
    path = write_rtstruct(labels, series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "rs.dcm", ALGORITHM)
    ds = pydicom.dcmread(path)
    for roi in ds.ROIContourSequence:  # UIDs of another (e.g. uncropped) series
        for contour in roi.ContourSequence:
            contour.ContourImageSequence[0].ReferencedSOPInstanceUID = pydicom.uid.generate_uid()
    np.testing.assert_array_equal(rtstruct_to_labels(ds, series), labels)
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3"
    with pytest.raises(ValueError, match="ROI 'organ': its Frame of Reference is not the series'"):
        roi_masks(ds, series)
    with pytest.raises(ValueError, match="no ROI 'GTV'"):
        rtstruct_to_labels(path, series, {"GTV": 1})


def test_sarcoma_expert_rtstruct_equals_its_nifti_label(shared_dir):
    case = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT"
    truth = nib.load(shared_dir / "data" / "SarcomaCT" / "labelsTr" / "STS_019.nii.gz")
    series = read_series(case / "image")
    np.testing.assert_allclose(series.affine_ras, truth.affine, atol=1e-4)  # the same grid
    labels = rtstruct_to_labels(case / "mask" / "RS.dcm", series, {"GTV_Mass_CT": 1})
    expected = np.asarray(truth.dataobj).astype(np.uint8)
    assert expected.sum() > 5000
    assert int((labels != expected).sum()) == 0


def test_sarcoma_rtstruct_is_valid_for_dciodvfy(tmp_path, shared_dir):
    case = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT" / "image"
    truth = nib.load(shared_dir / "data" / "SarcomaCT" / "labelsTr" / "STS_019.nii.gz")
    labels = np.asarray(truth.dataobj).astype(np.uint8)
    series = read_series(case)
    concepts = class_concepts(["background", "tumour"], SARCOMA_CODES)
    path = write_rtstruct(labels, series, concepts, tmp_path / "STS_019_rtstruct.dcm", ALGORITHM, truth.affine)
    assert dciodvfy_errors(path) == []
    assert _dice(rtstruct_to_labels(path, series) == 1, labels == 1) >= 0.97
