"""Finding the cases to predict: a file, a folder of files, a DICOM series folder, or a folder of series."""

from __future__ import annotations

import os
from pathlib import Path

from unet_med.data.readers import MAX_SCAN_VOXELS, ImageInfo, check_size, image_suffix, read_header

__all__ = ["case_header", "find_cases", "is_dicom_series"]


def is_dicom_series(folder: str | os.PathLike) -> bool:
    """True when SimpleITK (GDCM) finds a DICOM series directly in ``folder``."""
    import SimpleITK as sitk

    return Path(folder).is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def find_cases(path: str | os.PathLike) -> list[Path]:
    """The inputs under ``path``, sorted by name.

    - an image file (NIfTI, NRRD, MetaImage, PNG, TIFF, a single ``.dcm``): itself;
    - a folder holding a DICOM series: the folder (one case);
    - any other folder: its image files and its subfolders that hold a DICOM series (hidden names skipped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the folder holds nothing to predict.
    """
    path = Path(path).expanduser().absolute()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input not found: {path}")
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and image_suffix(p)]
    if not files and is_dicom_series(path):
        return [path]
    cases = files + [p for p in entries if p.is_dir() and is_dicom_series(p)]
    if not cases:
        raise ValueError(
            f"{path}: nothing to predict (no .nii, .nii.gz, .nrrd, .mha, .mhd, .png, .tif file or DICOM series)"
        )
    return sorted(cases)


def case_header(case: str | os.PathLike, max_voxels: int | None = MAX_SCAN_VOXELS) -> ImageInfo:
    """The header of one case (an image file, a DICOM file or a DICOM series folder), checked before any voxel is
    read: its size against ``max_voxels`` (spatial voxels x channels; ``None``: no limit) and, for NIfTI, NRRD and
    MetaImage, against what the file can hold (:mod:`unet_med.data.readers`).

    Raises:
        ScanTooLarge: more voxels than ``max_voxels``.
        ImageReadError: a header that cannot be read or promises more data than the file holds.
        ValueError: a folder without a DICOM series.
    """
    from unet_med.data.sitk_reader import read_dicom_header

    path = Path(case)
    info = read_header(path) if path.is_file() and image_suffix(path) else read_dicom_header(path)
    check_size(path, info.shape, info.channels, max_voxels)
    return info
