"""SITKReader: a MONAI ImageReader on SimpleITK that agrees with nibabel's geometry and MONAI's conventions."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from monai.transforms import LoadImage, LoadImaged

from unet_med.data import SITKReader
from unet_med.data.sitk_reader import itk_geometry_from_affine

RNG = np.random.default_rng(0)
OBLIQUE = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # a permuted (non-identity) direction


def itk_image(shape_zyx=(6, 7, 8), spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.0, 5.0), direction=OBLIQUE):
    array = RNG.integers(-1000, 1000, size=shape_zyx).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image, array


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str = "1.2.826.0.1.3680043.2.1125.1.12345") -> None:
    """One DICOM file per slice with the geometry tags a series reader needs (SimpleITK's own recipe)."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    orientation = "\\".join(str(v) for v in (*direction[0:7:3], *direction[1:8:3]))
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        for tag, value in (
            ("0008|0060", "CT"),
            ("0020|000e", series_uid),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.54321"),
            ("0020|0037", orientation),
            ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
            ("0020|0013", str(k + 1)),
            ("0028|0030", f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}"),
            ("0018|0050", str(image.GetSpacing()[2])),
        ):
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(s)


def test_nrrd_matches_nibabel_convention(tmp_path):
    image, array = itk_image()
    sitk.WriteImage(image, str(tmp_path / "a.nrrd"))
    data = LoadImage(reader=SITKReader(), image_only=True)(str(tmp_path / "a.nrrd"))
    assert tuple(data.shape) == (8, 7, 6)  # (x, y, z)
    np.testing.assert_array_equal(data.numpy(), np.transpose(array, (2, 1, 0)))
    # the same volume as NIfTI through nibabel has the same affine
    nifti = sitk.GetImageFromArray(array)
    nifti.CopyInformation(image)
    sitk.WriteImage(nifti, str(tmp_path / "a.nii.gz"))
    np.testing.assert_allclose(data.affine.numpy(), nib.load(tmp_path / "a.nii.gz").affine, atol=1e-5)


def test_affine_round_trip_to_itk_geometry():
    image, _ = itk_image()
    from unet_med.data.sitk_reader import _affine_ras

    spacing, direction, origin = itk_geometry_from_affine(_affine_ras(image))
    np.testing.assert_allclose(spacing, image.GetSpacing())
    np.testing.assert_allclose(direction, image.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(origin, image.GetOrigin())


def test_dicom_series_folder_and_registration_with_loadimaged(tmp_path):
    image, array = itk_image(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_dicom_series(image, tmp_path / "series")
    loader = LoadImaged(keys="image", image_only=True)
    loader.register(SITKReader())
    data = loader({"image": str(tmp_path / "series")})["image"]
    assert tuple(data.shape) == (8, 7, 6)
    np.testing.assert_array_equal(data.numpy(), np.transpose(array, (2, 1, 0)))
    assert data.meta["spatial_shape"].tolist() == [8, 7, 6]
    np.testing.assert_allclose(np.diag(data.affine.numpy())[:3], [-0.7, -0.8, 2.5], atol=1e-4)


def test_vector_tiff_and_suffixes(tmp_path):
    rgb = RNG.integers(0, 255, size=(5, 9, 3)).astype(np.uint8)  # rows, columns, samples
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.tif"))
    reader = SITKReader()
    assert reader.verify_suffix(str(tmp_path / "rgb.tif")) and reader.verify_suffix(str(tmp_path))
    assert not reader.verify_suffix("a.nii.gz")
    array, meta = reader.get_data(reader.read(str(tmp_path / "rgb.tif")))
    assert array.shape == (9, 5, 3) and meta["original_channel_dim"] == -1
    np.testing.assert_array_equal(array, np.swapaxes(rgb, 0, 1))


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no DICOM series"):
        SITKReader().read(str(tmp_path))
