"""read_series: one regular image series from a PACS export folder, or one clear line naming file and reason."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.dicom.make_series import phantom, write_series, write_sr
from unet_med.data import SITKReader
from unet_med.dicom import SeriesError, read_series


def test_shuffled_files_and_instance_numbers_from_zero_are_ordered_by_position(tmp_path):
    image, _ = phantom()
    write_series(tmp_path, image, order=[3, 0, 7, 1, 6, 2, 5, 4], first_instance=0)
    series = read_series(tmp_path)
    assert series.shape == image.shape
    z = [float(ds.ImagePositionPatient[2]) for ds in series.datasets]
    assert z == sorted(z) and series.datasets[0].InstanceNumber == 0
    np.testing.assert_allclose(np.diag(series.affine_ras), [-0.7, -0.8, 2.5, 1.0])
    np.testing.assert_allclose(series.affine_ras[:3, 3], [20.0, -30.0, -50.0])
    loaded = LoadImage(reader=SITKReader(), image_only=True)(str(tmp_path))  # the grid predictions are made on
    np.testing.assert_array_equal(loaded.numpy(), image)
    np.testing.assert_allclose(loaded.affine.numpy(), series.affine_ras, atol=1e-5)


def test_several_series_need_a_choice_and_non_images_are_skipped(tmp_path):
    image, _ = phantom()
    write_series(tmp_path, image, series_uid="1.2.3.4.1")
    write_series(tmp_path / "b", image[:, :, :5], series_uid="1.2.3.4.2")
    for path in (tmp_path / "b").iterdir():
        path.rename(tmp_path / f"B{path.name}")
    write_sr(tmp_path / "report.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(SeriesError, match=r"2 image series in this folder, choose one with --series UID") as e:
        read_series(tmp_path)
    assert "1.2.3.4.1 (CT, series 3, 8 images)" in str(e.value) and "1.2.3.4.2" in str(e.value)
    assert read_series(tmp_path, series_uid="1.2.3.4.2").shape == (24, 20, 5)
    loaded = LoadImage(reader=SITKReader(series_uid="1.2.3.4.1"), image_only=True)(str(tmp_path))
    assert tuple(loaded.shape) == (24, 20, 8)
    with pytest.raises(SeriesError, match=r"no image series 9\.9"):
        read_series(tmp_path, series_uid="9.9")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depths": [0, 2.5, 5, 10, 12.5, 15, 17.5, 20]}, r"IM0003: missing slice \(5 mm after IM0002"),
        ({"depths": [0, 2.5, 5, 7.9, 10.4, 12.9, 15.4, 17.9]}, "IM0003: uneven slice spacing"),
        ({"depths": [0, 2.5, 5, 5, 7.5, 10, 12.5, 15]}, "IM0003: at the same position as IM0002"),
        ({"shift_per_slice": (0.0, 0.5, 0.0)}, "gantry tilt"),
    ],
)
def test_irregular_series_are_refused_naming_the_file(tmp_path, kwargs, message):
    image, _ = phantom()
    write_series(tmp_path, image, **kwargs)
    with pytest.raises(SeriesError, match=message):
        read_series(tmp_path)


def test_enhanced_multi_frame_is_refused(tmp_path):
    image, _ = phantom()
    files = write_series(tmp_path, image[:, :, :1])
    ds = pydicom.dcmread(files[0])
    ds.NumberOfFrames = 8
    ds.save_as(files[0])
    with pytest.raises(SeriesError, match=r"IM0000: an enhanced multi-frame image \(8 frames"):
        read_series(tmp_path)


def test_oblique_series_geometry(tmp_path):
    image, _ = phantom()
    c, s = np.cos(0.3), np.sin(0.3)
    orientation = (c, s, 0.0, 0.0, 0.0, -1.0)  # a coronal-ish oblique plane
    write_series(tmp_path, image, orientation=orientation)
    series = read_series(tmp_path)
    loaded = LoadImage(reader=SITKReader(), image_only=True)(str(tmp_path))
    np.testing.assert_allclose(loaded.affine.numpy(), series.affine_ras, atol=1e-4)
    np.testing.assert_array_equal(loaded.numpy(), image)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_transfer_syntaxes_read(tmp_path, syntax):
    image, _ = phantom((64, 64, 6))  # OpenJPEG's default resolution levels need at least 32 pixels a side
    write_series(tmp_path, image, compress=syntax)
    assert pydicom.dcmread(next(tmp_path.iterdir())).file_meta.TransferSyntaxUID == syntax
    loaded = LoadImage(reader=SITKReader(), image_only=True)(str(tmp_path))
    np.testing.assert_array_equal(loaded.numpy(), image)


def test_a_folder_is_read_again_only_when_it_changed(tmp_path):
    image, _ = phantom()
    files = write_series(tmp_path, image)
    first = read_series(tmp_path)
    assert read_series(tmp_path) is first
    files[-1].unlink()
    assert read_series(tmp_path).shape == (24, 20, 7)
