"""DICOM SEG: read back by highdicom and by dcmqi it is the mask it was made from; dciodvfy finds no error."""

from __future__ import annotations

import warnings

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tests.dicom.dicom_checks import PHANTOM_CODES, SARCOMA_CODES, dciodvfy_errors, segimage2itkimage
from tests.dicom.make_series import FRAME_UID, STUDY_UID, phantom, write_series
from unet_med.dicom import class_concepts, read_series, write_rtstruct, write_seg

CLASSES = ["background", "organ", "lesion"]
ALGORITHM = ("unet_med test U-Net", "1.2.3")


def _written(tmp_path, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)):
    image, labels = phantom()
    write_series(tmp_path / "ct", image, order=[5, 2, 7, 0, 1, 6, 3, 4], orientation=orientation)
    series = read_series(tmp_path / "ct")
    path = write_seg(labels, series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "case_seg.dcm", ALGORITHM)
    return series, labels, path


def _by_source(seg, series):
    uids = [ds.SOPInstanceUID for ds in series.datasets]
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True)  # (images, rows, columns)
    return np.transpose(frames, (2, 1, 0))


@pytest.mark.parametrize("orientation", [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)])
def test_seg_read_back_by_highdicom_equals_the_mask(tmp_path, orientation):
    series, labels, path = _written(tmp_path, orientation)
    seg = hd.seg.segread(path)
    np.testing.assert_array_equal(_by_source(seg, series), labels)
    assert seg.SegmentationType == "BINARY" and seg.number_of_segments == 2
    assert seg.FrameOfReferenceUID == FRAME_UID and seg.StudyInstanceUID == STUDY_UID
    assert seg.PatientID == "TEST01" and seg.PatientBirthDate == "19700101"
    assert seg.SeriesInstanceUID != series.series_uid and seg.SOPInstanceUID not in {
        ds.SOPInstanceUID for ds in series.datasets
    }
    lesion = seg.get_segment_description(2)
    assert lesion.segment_label == "lesion"
    assert lesion.segmented_property_category.value == "49755003"
    assert lesion.segmented_property_type.value == "108369006"
    assert lesion.algorithm_identification[0].AlgorithmName == ALGORITHM[0]
    assert lesion.algorithm_identification[0].AlgorithmVersion == ALGORITHM[1]
    # every stored frame references its source image
    referenced = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in seg.PerFrameFunctionalGroupsSequence
    }
    assert referenced <= {ds.SOPInstanceUID for ds in series.datasets} and referenced


def test_two_runs_get_new_uids_and_an_empty_mask_is_a_valid_seg(tmp_path):
    series, labels, first = _written(tmp_path)
    second = write_seg(
        np.zeros_like(labels), series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "empty.dcm", ALGORITHM
    )
    a, b = hd.seg.segread(first), hd.seg.segread(second)
    assert a.SeriesInstanceUID != b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert not _by_source(b, series).any() and b.NumberOfFrames == 2 * labels.shape[2]


def test_missing_codes_and_off_grid_masks_are_refused(tmp_path):
    series, labels, _ = _written(tmp_path)
    with pytest.raises(ValueError, match="class 'lesion' has no coded concept"):
        write_seg(
            labels, series, class_concepts(CLASSES, {"organ": PHANTOM_CODES["organ"]}), tmp_path / "x.dcm", ALGORITHM
        )
    with pytest.raises(ValueError, match="the mask is"):
        write_seg(labels[:, :, 1:], series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "x.dcm", ALGORITHM)
    shifted = series.affine_ras.copy()
    shifted[0, 3] += 5
    with pytest.raises(ValueError, match="not on its voxel grid"):
        write_seg(labels, series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "x.dcm", ALGORITHM, shifted)
    assert not (tmp_path / "x.dcm").exists()


def test_dcmqi_reads_the_same_mask_and_geometry(tmp_path):
    series, labels, path = _written(tmp_path)
    merged = sitk.ReadImage(str(segimage2itkimage(path, tmp_path / "qi")))
    ct = sitk.ReadImage([str(f) for f in series.files])
    on_ct = sitk.Resample(merged, ct, sitk.Transform(), sitk.sitkNearestNeighbor)  # dcmqi's grid: stored frames
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(on_ct), (2, 1, 0)), labels)
    np.testing.assert_allclose(merged.GetSpacing(), ct.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(merged.GetDirection(), ct.GetDirection(), atol=1e-6)


def test_sarcoma_seg_is_valid_for_dciodvfy_and_highdicom(tmp_path, shared_dir):
    case = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT" / "image"
    truth = nib.load(shared_dir / "data" / "SarcomaCT" / "labelsTr" / "STS_019.nii.gz")
    labels = np.asarray(truth.dataobj).astype(np.uint8)
    series = read_series(case)
    concepts = class_concepts(["background", "tumour"], SARCOMA_CODES)
    name = str(series.datasets[0].PatientName)  # one component, which highdicom warns about, quoting it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_seg(labels, series, concepts, tmp_path / "STS_019_seg.dcm", ALGORITHM, affine_ras=truth.affine)
        write_rtstruct(labels, series, concepts, tmp_path / "STS_019_rtstruct.dcm", ALGORITHM, affine_ras=truth.affine)
    assert not [w for w in caught if name in str(w.message)], "a patient name reached a warning"
    assert dciodvfy_errors(path) == []
    np.testing.assert_array_equal(_by_source(hd.seg.segread(path), series), labels)
    assert hd.seg.segread(path).StudyID == "IBSI_1_STS_019_C"  # the source's 17 characters cut to SH's 16
