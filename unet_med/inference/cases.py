"""Finding the cases to predict: a file, a folder of files, a DICOM series folder, or a patient / study tree.

- an image file (NIfTI, NRRD, MetaImage, PNG, TIFF, a single ``.dcm``): itself;
- a folder holding a DICOM image series: the folder (one case);
- any other folder: its image files, and every folder below it that holds a DICOM image series (a patient or
  study folder is searched down to its series). Folders below that hold no image series are reported with the
  reason: only non-image DICOM objects (RTSTRUCT contours, SR reports, SEG, ...), image files that are not
  searched below the top folder, or nothing readable.

Hidden names are skipped. Raw ITK / GDCM warnings are kept off the console (:func:`quiet_itk`).

Example::

    found = discover_cases("patient_17/")
    found.cases  # [Path(".../patient_17/CT/image")]
    found.skipped  # [(Path(".../patient_17/CT/mask"), "RTSTRUCT only (contours, not an image series)")]
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from unet_med.data.readers import MAX_SCAN_VOXELS, ImageInfo, check_size, image_suffix, read_header
from unet_med.data.sitk_reader import quiet_itk

__all__ = [
    "Discovery",
    "case_header",
    "dicom_series_ids",
    "discover_cases",
    "find_cases",
    "is_dicom_series",
    "quiet_itk",
]

# What a DICOM object of a modality that is not an image series is, for the message of a skipped folder.
_NOT_IMAGES = {
    "RTSTRUCT": "contours",
    "SR": "a structured report",
    "SEG": "a segmentation",
    "RTPLAN": "a treatment plan",
    "RTRECORD": "a treatment record",
    "PR": "a presentation state",
    "KO": "a key-object selection",
    "REG": "a registration",
    "DOC": "a document",
}


def dicom_series_ids(folder: str | os.PathLike) -> tuple[str, ...]:
    """The DICOM image series directly in ``folder`` (GDCM's ids: the SeriesInstanceUIDs), quietly."""
    import SimpleITK as sitk

    if not Path(folder).is_dir():
        return ()
    with quiet_itk():
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def is_dicom_series(folder: str | os.PathLike) -> bool:
    """True when SimpleITK (GDCM) finds a DICOM image series directly in ``folder``."""
    return bool(dicom_series_ids(folder))


@dataclasses.dataclass
class Discovery:
    """The cases under an input path, and the folders passed over.

    Attributes:
        root: the input path (absolute).
        cases: image files and DICOM series folders, sorted.
        series: for each DICOM series case, a one-line description (``"CT, 47 files"``).
        skipped: ``(folder, reason)`` for every folder below ``root`` that holds files but no image series.
    """

    root: Path
    cases: list[Path] = dataclasses.field(default_factory=list)
    series: dict[Path, str] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)

    def relative(self, path: Path) -> str:
        """``path`` relative to the input (the input's own name for the input itself)."""
        return path.name if path == self.root else str(path.relative_to(self.root))


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _dicom_modalities(files: list[Path]) -> dict[str, int]:
    """Modality -> number of files, over the DICOM files among ``files`` (headers only, no pixel data)."""
    import pydicom
    from pydicom.misc import is_dicom

    counts: dict[str, int] = {}
    for f in files:
        if not (f.suffix.lower() == ".dcm" or is_dicom(f)):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality"], force=True)
        except Exception:  # pydicom raises many types for non-DICOM bytes: such a file is skipped
            continue
        modality = str(getattr(ds, "Modality", "") or "unknown modality")
        counts[modality] = counts.get(modality, 0) + 1
    return counts


def _why_skipped(files: list[Path]) -> str:
    images = [f for f in files if image_suffix(f)]
    if images:
        return f"{len(images)} image file(s) below the input folder are not searched; give this folder as --input"
    modalities = _dicom_modalities(files)
    if modalities:
        kinds = ", ".join(f"{m} ({_NOT_IMAGES.get(m, 'not an image series')})" for m in sorted(modalities))
        return f"{kinds} only, no image series"
    return f"no DICOM series or image file ({len(files)} other file(s))"


def _describe_series(folder: Path, ids: tuple[str, ...]) -> str:
    files = [f for f in _visible(folder) if f.is_file()]
    modalities = _dicom_modalities(files[:1])  # one header names the series' modality
    modality = next(iter(modalities), "DICOM")
    extra = f"; {len(ids) - 1} more series in this folder not read (one series per folder)" if len(ids) > 1 else ""
    return f"{modality}, {len(files)} files{extra}"


def discover_cases(path: str | os.PathLike) -> Discovery:
    """Finds the cases under ``path`` (see the module's docstring) and says which folders were passed over.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: nothing to predict under ``path`` (the message lists the folders passed over, with why).
    """
    root = Path(path).expanduser().absolute()
    found = Discovery(root)
    if root.is_file():
        found.cases.append(root)
        return found
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {root}")
    entries = _visible(root)
    found.cases += [p for p in entries if p.is_file() and image_suffix(p)]
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        ids = dicom_series_ids(here)
        if ids and (here != root or not found.cases):
            found.cases.append(here)
            found.series[here] = _describe_series(here, ids)
        elif here != root and any(not n.startswith(".") for n in names):
            found.skipped.append((here, _why_skipped([here / n for n in sorted(names) if not n.startswith(".")])))
    found.cases.sort()
    if not found.cases:
        passed = "".join(f"; {found.relative(f)}: {why}" for f, why in found.skipped[:5])
        raise ValueError(
            f"{root}: nothing to predict (no .nii, .nii.gz, .nrrd, .mha, .mhd, .png, .tif file or DICOM series){passed}"
        )
    return found


def find_cases(path: str | os.PathLike) -> list[Path]:
    """The inputs under ``path``, sorted by name (:func:`discover_cases` without the report).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the folder holds nothing to predict.
    """
    return discover_cases(path).cases
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
