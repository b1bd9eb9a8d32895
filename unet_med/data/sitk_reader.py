"""A MONAI ``ImageReader`` built on SimpleITK, for NRRD, MetaImage, TIFF and DICOM series folders.

MONAI's own ``ITKReader`` needs the ``itk`` package; SimpleITK (a dependency of unet_med) reads the same formats.
The reader follows MONAI's conventions so the rest of a MONAI pipeline cannot tell the difference: the array's axes
are ITK's index axes ``(i, j[, k])`` (ITK's ``(z, y, x)`` numpy view transposed back) with vector components last,
and the affine maps a voxel index to RAS+ millimetres (ITK's LPS world turned to RAS, as MONAI's ``ITKReader`` does
by default).

Register it with a ``LoadImage``/``LoadImaged`` so it is tried before MONAI's own readers::

    loader = LoadImaged(keys="image", image_only=True)
    loader.register(SITKReader())
    loader({"image": "lung1_image.nrrd"})["image"].shape  # (512, 512, 48)
    loader({"image": "dicom/series_1/"})["image"].affine  # the series' geometry, RAS

or pass it directly: ``LoadImage(reader=SITKReader(), image_only=True)("scan.mha")``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.image_reader import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from unet_med.data.readers import ImageInfo, ImageReadError, _itk_dtype

__all__ = [
    "SITK_SUFFIXES",
    "SITKReader",
    "itk_geometry_from_affine",
    "quiet_itk",
    "read_dicom_header",
    "read_dicom_series",
]

SITK_SUFFIXES: tuple[str, ...] = ("nrrd", "nhdr", "mha", "mhd", "tif", "tiff", "dcm")
"""File name endings :class:`SITKReader` accepts (besides a folder holding one DICOM series)."""


def _is_dicom_folder(path: str | os.PathLike) -> bool:
    return Path(path).is_dir()


@contextlib.contextmanager
def quiet_itk() -> Iterator[None]:
    """ITK's warnings (printed straight to stderr by C++, e.g. GDCM's "No Series were found") off for a block."""
    import SimpleITK as sitk

    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def read_dicom_series(folder: str | os.PathLike, series_uid: str | None = None) -> Any:
    """Reads the DICOM image series in ``folder`` as a ``SimpleITK.Image``.

    The files are chosen and ordered by :func:`unet_med.dicom.read_series`: one series (``series_uid`` when the
    folder holds several), non-image objects skipped, slices ordered along the normal and checked to form a
    regular volume.

    Raises:
        ValueError: no image series, several and none chosen, or not a regular volume (names file and reason).
    """
    import SimpleITK as sitk

    from unet_med.dicom.series import read_series

    series = read_series(folder, series_uid=series_uid)
    with quiet_itk():  # GDCM prints its warnings to stderr: keep them off
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in series.files])
        return reader.Execute()


def read_dicom_header(path: str | os.PathLike) -> ImageInfo:
    """The header of a DICOM series folder (its first series) or a single DICOM file, without reading pixels.

    A series' shape is ``(columns, rows, number of files)``; its slice spacing is the distance between the first
    two slices' positions.

    Raises:
        ValueError: a folder without a DICOM series.
        ImageReadError: a file whose header cannot be read.
    """
    import SimpleITK as sitk

    path = Path(path)
    files = [str(path)]
    if path.is_dir():
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ValueError(f"{path}: no DICOM series found in this folder")
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]))
    headers = []
    for name in files[:2]:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError as e:
            raise ImageReadError(f"{path}: cannot read the DICOM header of {Path(name).name}") from e
        headers.append(reader)
    first = headers[0]
    size, spacing = list(first.GetSize()), list(first.GetSpacing())
    if path.is_dir():
        size = [*size[:2], len(files)]
        if len(headers) > 1:
            gap = np.linalg.norm(np.subtract(headers[1].GetOrigin(), first.GetOrigin()))
            spacing = [*spacing[:2], float(gap) if gap > 0 else spacing[-1]]
    shape = tuple(int(s) for s in size if s > 1) if not path.is_dir() else tuple(int(s) for s in size)
    affine = np.eye(4)  # spacing only: the planner needs sizes, not the orientation
    k = min(len(spacing), 3)
    affine[:k, :k] = np.diag(spacing[:k])
    dtype = _itk_dtype(first.GetPixelID())
    channels = int(first.GetNumberOfComponents())
    return ImageInfo(path, shape, channels, tuple(float(s) for s in spacing[: len(shape)]), affine, dtype)


def _affine_ras(image: Any) -> np.ndarray:
    """The ``(d+1, d+1)`` voxel-to-RAS affine of a ``SimpleITK.Image`` (d = spatial dims, at most 3)."""
    dims = min(image.GetDimension(), 3)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(image.GetDimension(), -1)[:dims, :dims]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:dims]
    affine = np.eye(dims + 1)
    affine[:dims, :dims] = direction @ np.diag(spacing)
    affine[:dims, -1] = np.asarray(image.GetOrigin(), dtype=np.float64)[:dims]
    affine[: min(dims, 2)] *= -1.0  # LPS -> RAS: negate the x (and y) world rows
    return affine + 0.0  # no negative zeros


def itk_geometry_from_affine(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Turns a voxel-to-RAS affine back into ITK's ``(spacing, direction, origin)`` (LPS), the inverse of the reader.

    Args:
        affine: ``(d+1, d+1)`` matrix, d = 2 or 3.

    Returns:
        ``spacing`` (d values), ``direction`` (d*d values, row-major), ``origin`` (d values).
    """
    affine = np.array(affine, dtype=np.float64)
    dims = affine.shape[0] - 1
    affine[: min(dims, 2)] *= -1.0  # RAS -> LPS
    linear = affine[:dims, :dims]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / np.where(spacing > 0, spacing, 1.0)
    return tuple(spacing.tolist()), tuple(direction.ravel().tolist()), tuple(affine[:dims, -1].tolist())


class SITKReader(ImageReader):
    """Loads NRRD, MetaImage (``.mha``/``.mhd``), TIFF, single DICOM files and DICOM series folders with SimpleITK.

    Args:
        channel_dim: the channel axis of the returned array; ``None`` means MONAI's default (``"no_channel"`` for a
            scalar image, ``-1`` for vector pixels such as RGB).
        suffixes: file name endings to accept (default :data:`SITK_SUFFIXES`).
        series_uid: the SeriesInstanceUID to read from a folder holding several series.

    Returned array axes: 3D ``(i, j, k[, c])``, 2D ``(i, j[, c])`` where ``i`` runs along a row (ITK's x), so a
    ``H x W`` TIFF comes back ``(W, H)``, the convention of MONAI's ``PILReader`` and ``ITKReader``.
    """

    def __init__(
        self,
        channel_dim: str | int | None = None,
        suffixes: Sequence[str] = SITK_SUFFIXES,
        series_uid: str | None = None,
    ) -> None:
        super().__init__()
        self.series_uid = series_uid
        self.channel_dim = channel_dim
        self.suffixes = tuple(s.lower().lstrip(".") for s in suffixes)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True when every name is a folder (a DICOM series) or ends with one of ``suffixes``."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return bool(names) and all(
            _is_dicom_folder(n) or str(n).lower().rsplit(".", 1)[-1] in self.suffixes for n in names
        )

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        """Reads one image (or a list of images); a folder is read as a DICOM series."""
        import SimpleITK as sitk

        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        images = [
            read_dicom_series(n, self.series_uid) if _is_dicom_folder(n) else sitk.ReadImage(str(n), **kwargs)
            for n in names
        ]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Returns ``(array, meta)``; several images are stacked on a new first axis (MONAI's convention)."""
        import SimpleITK as sitk

        arrays, meta = [], {}
        for image in img if isinstance(img, (list, tuple)) else [img]:
            dims = image.GetDimension()
            array = sitk.GetArrayViewFromImage(image)  # (z, y, x[, c])
            vector = array.ndim > dims
            axes = tuple(reversed(range(dims))) + ((dims,) if vector else ())
            arrays.append(np.transpose(array, axes).copy())  # a copy: the view dies with `image`
            affine = _affine_ras(image)
            meta = {
                "spacing": np.asarray(image.GetSpacing()),
                MetaKeys.ORIGINAL_AFFINE: affine,
                MetaKeys.AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(image.GetSize()[: min(dims, 3)]),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: (
                    (-1 if vector else float("nan")) if self.channel_dim is None else self.channel_dim
                ),
            }
        if len(arrays) == 1:
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays), meta
