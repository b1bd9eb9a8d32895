"""A DICOM series with an RTSTRUCT or a SEG as image + label, on the grid MONAI's readers give the series."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from tests.dicom.dicom_checks import PHANTOM_CODES
from tests.dicom.make_series import phantom, write_series
from unet_med.data import SITKReader
from unet_med.dicom import LoadDicomLabeld, class_concepts, read_series, write_rtstruct, write_seg

CLASSES = ["background", "organ", "lesion"]
ALGORITHM = ("test", "1")


def _loader(**kwargs) -> Compose:
    image = LoadImaged(keys="image", image_only=True)
    image.register(SITKReader())
    return Compose([LoadDicomLabeld(keys="label", **kwargs), image, EnsureChannelFirstd(keys=["image", "label"])])


@pytest.mark.parametrize("kind", ["rtstruct", "seg"])
def test_label_on_the_image_grid(tmp_path, kind):
    image, labels = phantom()
    write_series(tmp_path / "ct", image, order=[2, 5, 0, 7, 1, 3, 6, 4])
    series = read_series(tmp_path / "ct")
    writer = write_rtstruct if kind == "rtstruct" else write_seg
    path = writer(labels, series, class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "label.dcm", ALGORITHM)
    item = _loader()({"image": str(tmp_path / "ct"), "label": str(path)})
    assert item["image"].shape == item["label"].shape == (1, *labels.shape)
    np.testing.assert_array_equal(item["label"][0].numpy(), labels)
    np.testing.assert_allclose(item["label"].affine.numpy(), item["image"].affine.numpy(), atol=1e-5)
    swapped = _loader(label_of={"lesion": 1, "organ": 2})({"image": str(tmp_path / "ct"), "label": str(path)})
    np.testing.assert_array_equal(swapped["label"][0].numpy(), np.choose(labels, [0, 2, 1]))


def test_seg_of_another_copy_of_the_series_is_matched_by_position(tmp_path):
    image, labels = phantom()
    write_series(tmp_path / "ct", image)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in (tmp_path / "ct").iterdir():  # same positions and Frame of Reference, new SOP Instance UIDs
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(copy / path.name)
    seg = write_seg(labels, read_series(copy), class_concepts(CLASSES, PHANTOM_CODES), tmp_path / "s.dcm", ALGORITHM)
    item = LoadDicomLabeld()({"image": str(tmp_path / "ct"), "label": str(seg)})
    np.testing.assert_array_equal(item["label"].numpy(), labels)


def test_sarcoma_rtstruct_as_label_equals_the_nifti(shared_dir):
    case = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT"
    truth = nib.load(shared_dir / "data" / "SarcomaCT" / "labelsTr" / "STS_019.nii.gz")
    item = _loader(label_of={"GTV_Mass_CT": 1})({"image": str(case / "image"), "label": str(case / "mask" / "RS.dcm")})
    np.testing.assert_array_equal(item["label"][0].numpy(), np.asarray(truth.dataobj).astype(np.uint8))
    np.testing.assert_allclose(item["label"].affine.numpy(), truth.affine, atol=1e-4)


def test_a_label_that_is_not_rtstruct_or_seg_is_refused(tmp_path):
    image, _ = phantom()
    files = write_series(tmp_path / "ct", image)
    not_a_label = tmp_path / "image.dcm"
    not_a_label.write_bytes(files[0].read_bytes())
    with pytest.raises(ValueError, match=r"image\.dcm: a CT object, not an RTSTRUCT or a SEG"):
        LoadDicomLabeld()({"image": str(tmp_path / "ct"), "label": str(not_a_label)})
