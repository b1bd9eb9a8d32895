"""Reading a DICOM series the way a PACS exports it: a folder of files, perhaps several series and other objects.

:func:`read_series` scans a folder's DICOM headers (pydicom, no pixel data), keeps the images of one series,
sorts them along the slice normal and checks that they form a regular volume. Anything it cannot turn into a
volume is refused with one line naming the file (or folder) and the reason, before any work starts:

- several image series in one folder: choose one by its SeriesInstanceUID (``--series UID``); the error lists them;
- a missing slice or uneven slice spacing; two images at one position; gantry tilt (slice positions not along the
  slice normal); images that differ in orientation, size or pixel spacing;
- an enhanced multi-frame image (one file holding a whole CT/MR volume): export the series as single-frame images.

Non-image objects beside the images (structured reports, presentation states, key object selections, RTSTRUCT,
SEG, ...) are skipped, with a log line. The order of InstanceNumber (which may start at 0) does not matter: the
images are ordered by position.

The voxel grid is the one SimpleITK (GDCM) reads from :attr:`DicomSeries.files` in this order: index ``(i, j, k)``
is (column, row, image), the affine maps it to patient coordinates (LPS, :attr:`DicomSeries.affine_lps`; RAS,
MONAI's convention, :attr:`DicomSeries.affine_ras`).

Example::

    series = read_series("export/")  # ValueError when the folder holds 2 series: names their UIDs
    series = read_series("export/", series_uid="1.2.826.0.1.3680043.8.498.1")
    len(series.files), series.shape  # 47, (136, 134, 47)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DicomSeries", "SeriesError", "list_series", "read_series"]

logger = logging.getLogger(__name__)

#: Modalities of objects that are not images of a series (skipped when found beside the images).
NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC", "AU", "ECG"})
#: Relative tolerance on slice spacing (1 %) and the largest offset of a slice from the normal through the first
#: one, as a fraction of the slice spacing, before the series is called uneven or tilted.
SPACING_RTOL = 0.01
TILT_TOL = 0.01


class SeriesError(ValueError):
    """A folder that does not hold one readable, regular image series (the message names file and reason)."""


@dataclasses.dataclass(frozen=True)
class DicomSeries:
    """One image series, its files ordered along the slice normal.

    Attributes:
        folder: the folder it was read from.
        series_uid: its SeriesInstanceUID.
        files: the image files, first to last along the slice normal (the ``k`` axis).
        datasets: their headers (no pixel data), in the same order.
        affine_lps: ``(4, 4)`` voxel ``(i, j, k)`` (column, row, image) to patient coordinates (LPS, mm).
        shape: ``(columns, rows, images)``, MONAI's axis order for this series.
    """

    folder: Path
    series_uid: str
    files: tuple[Path, ...]
    datasets: tuple[Any, ...]
    affine_lps: np.ndarray
    shape: tuple[int, int, int]

    @property
    def affine_ras(self) -> np.ndarray:
        """The voxel-to-RAS affine (MONAI's convention), as MONAI's readers give it for this series."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps + 0.0

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)

    @property
    def normal(self) -> np.ndarray:
        """The unit slice normal (row direction x column direction)."""
        return self.affine_lps[:3, 2] / np.linalg.norm(self.affine_lps[:3, 2])

    @property
    def positions(self) -> np.ndarray:
        """Each image's position along :attr:`normal` (mm), ascending."""
        origins = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in self.datasets])
        return origins @ self.normal


def _read_header(path: Path) -> Any | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None


def list_series(folder: str | os.PathLike) -> dict[str, list[tuple[Path, Any]]]:
    """The image series in ``folder`` (not its subfolders): ``{SeriesInstanceUID: [(file, header), ...]}``.

    Files that are not DICOM and DICOM objects that are not images (:data:`NON_IMAGE_MODALITIES`, or no pixel
    matrix) are skipped with a log line each.
    """
    folder = Path(folder)
    found: dict[str, list[tuple[Path, Any]]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        ds = _read_header(path)
        if ds is None or "SOPClassUID" not in ds:
            continue
        modality = str(ds.get("Modality", ""))
        if modality in NON_IMAGE_MODALITIES or "Rows" not in ds or "SeriesInstanceUID" not in ds:
            logger.info("%s: skipped, not an image (modality %s)", path, modality or "unknown")
            continue
        found.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    return found


def _describe(uid: str, items: list[tuple[Path, Any]]) -> str:
    ds = items[0][1]
    return f"{uid} ({ds.get('Modality', '?')}, series {ds.get('SeriesNumber', '?')}, {len(items)} images)"


def read_series(folder: str | os.PathLike, series_uid: str | None = None) -> DicomSeries:
    """Reads the headers of one image series in ``folder`` and checks its geometry (see the module's text).

    Args:
        folder: a folder of DICOM files (subfolders are not searched).
        series_uid: the SeriesInstanceUID to read; needed when the folder holds several image series.

    Raises:
        SeriesError: no image series, several and none chosen, the chosen one absent, or a series that is not a
            regular volume (the message names the file and the reason).
    """
    folder = Path(folder)
    key = (str(folder.absolute()), series_uid, _listing(folder))
    last_key, last = _LAST[0]
    if key[2] and key == last_key:  # the same folder, unchanged since it was last read (predict reads it twice)
        return last
    series = _read_series(folder, series_uid)
    _LAST[0] = (key, series)  # one assignment: another thread sees the old pair or the new one
    return series


#: The last series read, with its key (folder, series UID, the folder's file names, sizes and times).
_LAST: list[tuple[Any, Any]] = [(None, None)]


def _listing(folder: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        return tuple(
            sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file())
        )
    except OSError:
        return ()


def _read_series(folder: Path, series_uid: str | None) -> DicomSeries:
    found = list_series(folder)
    if not found:
        raise SeriesError(f"{folder}: no DICOM series found in this folder (no image objects)")
    if series_uid is None and len(found) > 1:
        listing = "; ".join(_describe(uid, items) for uid, items in sorted(found.items()))
        raise SeriesError(
            f"{folder}: {len(found)} image series in this folder, choose one with --series UID: {listing}"
        )
    uid = series_uid if series_uid is not None else next(iter(found))
    if uid not in found:
        raise SeriesError(f"{folder}: no image series {uid} here (found: {', '.join(sorted(found))})")
    return _checked(folder, uid, found[uid])


def _floats(ds: Any, keyword: str, path: Path, count: int) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != count:
        raise SeriesError(f"{path}: no {keyword} ({count} numbers): cannot place this image in space")
    return np.array([float(v) for v in value], dtype=np.float64)


def _checked(folder: Path, uid: str, items: list[tuple[Path, Any]]) -> DicomSeries:
    """Orders the images along their normal and refuses anything that is not a regular volume."""
    first_path, first = items[0]
    for path, ds in items:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
            raise SeriesError(
                f"{path}: an enhanced multi-frame image ({frames} frames in one file) is not supported; "
                "export the series as single-frame (classic) images"
            )
    orientation = _floats(first, "ImageOrientationPatient", first_path, 6)
    spacing = _floats(first, "PixelSpacing", first_path, 2)
    for path, ds in items[1:]:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", path, 6), orientation, atol=1e-4):
            raise SeriesError(f"{path}: its orientation differs from {first_path.name}'s (not one volume)")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise SeriesError(
                f"{path}: {ds.Rows}x{ds.Columns} pixels, {first_path.name} has {first.Rows}x{first.Columns}"
            )
        if not np.allclose(_floats(ds, "PixelSpacing", path, 2), spacing, rtol=1e-4):
            raise SeriesError(f"{path}: its pixel spacing differs from {first_path.name}'s")
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    origins = np.stack([_floats(ds, "ImagePositionPatient", path, 3) for path, ds in items])
    order = np.argsort(origins @ normal, kind="stable")
    items = [items[i] for i in order]
    origins = origins[order]
    depth = origins @ normal
    step = float(np.median(np.diff(depth))) if len(items) > 1 else float(first.get("SliceThickness") or 1.0)
    names = [p.name for p, _ in items]
    for k in range(1, len(items)):
        gap = depth[k] - depth[k - 1]
        if gap < 1e-3:
            raise SeriesError(f"{items[k][0]}: at the same position as {names[k - 1]} (two images, one slice)")
        if abs(gap - step) > SPACING_RTOL * step:
            what = "missing slice" if gap > 1.5 * step else "uneven slice spacing"
            raise SeriesError(
                f"{items[k][0]}: {what} ({gap:.3g} mm after {names[k - 1]}, the series' spacing is {step:.3g} mm)"
            )
    lateral = (origins - origins[0]) - np.outer(depth - depth[0], normal)
    drift = np.linalg.norm(lateral, axis=1)
    if len(items) > 1 and drift.max() > TILT_TOL * step:
        k = int(np.argmax(drift))
        angle = np.degrees(np.arctan2(drift[k], depth[k] - depth[0]))
        raise SeriesError(
            f"{items[k][0]}: gantry tilt (slices offset {angle:.1f} degrees from the slice normal); "
            "reconstruct the series without tilt"
        )
    affine = np.eye(4)
    affine[:3, 0] = row * spacing[1]  # i: along a row, from one column to the next
    affine[:3, 1] = col * spacing[0]  # j: down a column, from one row to the next
    affine[:3, 2] = normal * step
    affine[:3, 3] = origins[0]
    return DicomSeries(
        folder=folder,
        series_uid=uid,
        files=tuple(p for p, _ in items),
        datasets=tuple(ds for _, ds in items),
        affine_lps=affine,
        shape=(int(first.Columns), int(first.Rows), len(items)),
    )
