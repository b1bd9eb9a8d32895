"""Finding the cases to predict: a file, a folder of files, a DICOM series folder, or a folder of series."""

from __future__ import annotations

import os
from pathlib import Path

from unet_med.data.readers import image_suffix

__all__ = ["find_cases", "is_dicom_series"]


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
