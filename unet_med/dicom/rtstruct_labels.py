"""RTSTRUCT to a label map on a series' voxel grid: expert contours as training and evaluation labels.

Real structure sets are messy, so contours are placed by geometry, never by UID: the ``ReferencedSOPInstanceUID``
of a contour may name an image of another (e.g. the original, uncropped) series. Each contour's plane is found by
its distance along the series' slice normal (its points must lie in one plane, within a tenth of the slice
spacing) and matched to the nearest image within half a slice; its points go to (row, column) in that image.
A voxel belongs to the ROI when its centre is inside an odd number of the ROI's contours on that image (even-odd
rule: holes are contours inside contours, islands are several contours), as plastimatch rasterises. Contours off
the series (beyond its first or last image) are skipped with a log line; ROIs may overlap, each is rasterised
alone and the label map takes them in order (a later ROI wins where they overlap).

Example::

    series = read_series("STS_019/CT/image")
    labels = rtstruct_to_labels("STS_019/CT/mask/RS.dcm", series, {"GTV_Mass_CT": 1})  # (134... , 47) uint8
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from unet_med.dicom.series import DicomSeries

__all__ = ["roi_masks", "rtstruct_to_labels"]

logger = logging.getLogger(__name__)

#: Largest spread of one contour's points along the normal (fraction of the slice spacing) for it to be planar.
PLANAR_TOL = 0.1


def _read(rtstruct: str | os.PathLike | Any) -> Any:
    import pydicom

    if isinstance(rtstruct, (str, os.PathLike)):
        ds = pydicom.dcmread(rtstruct)
    else:
        ds = rtstruct
    if str(ds.get("Modality", "")) != "RTSTRUCT" or "ROIContourSequence" not in ds:
        raise ValueError(f"{rtstruct if isinstance(rtstruct, (str, os.PathLike)) else 'dataset'}: not an RTSTRUCT")
    return ds


def _fill(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels ``(rows, columns)`` whose centres lie inside the polygon ``points_rc`` ``(N, 2)`` (row, column)."""
    from matplotlib.path import Path as PolygonPath

    lo = np.maximum(np.floor(points_rc.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(points_rc.max(axis=0)).astype(int) + 1, shape)
    out = np.zeros(shape, dtype=bool)
    if np.any(hi <= lo):
        return out
    rr, cc = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    inside = PolygonPath(points_rc).contains_points(np.column_stack([rr.ravel(), cc.ravel()]), radius=0.0)
    out[lo[0] : hi[0], lo[1] : hi[1]] = inside.reshape(rr.shape)
    return out


def roi_masks(rtstruct: str | os.PathLike | Any, series: DicomSeries) -> dict[str, np.ndarray]:
    """Every ROI of ``rtstruct`` as a boolean mask ``(columns, rows, images)`` on ``series``' grid, by ROI name.

    Raises:
        ValueError: not an RTSTRUCT, a contour that is not planar or not parallel to the images, or a Frame of
            Reference other than the series' (the message names the ROI).
    """
    ds = _read(rtstruct)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    frames = {
        int(r.ROINumber): str(r.get("ReferencedFrameOfReferenceUID", "")) for r in ds.get("StructureSetROISequence", [])
    }
    affine = series.affine_lps
    normal = series.normal
    depths = series.positions
    step = float(np.linalg.norm(affine[:3, 2]))
    origins = np.array([[float(v) for v in d.ImagePositionPatient] for d in series.datasets])
    row_dir = affine[:3, 0] / np.linalg.norm(affine[:3, 0]) ** 2  # patient offset -> column index
    col_dir = affine[:3, 1] / np.linalg.norm(affine[:3, 1]) ** 2  # patient offset -> row index
    columns, rows, images = series.shape
    out: dict[str, np.ndarray] = {}
    for item in ds.ROIContourSequence:
        number = int(item.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        if frames.get(number) and frames[number] != series.frame_of_reference_uid:
            raise ValueError(f"ROI {name!r}: its Frame of Reference is not the series' (contours cannot be placed)")
        mask = np.zeros((images, rows, columns), dtype=bool)
        for contour in item.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) not in ("CLOSED_PLANAR", ""):
                continue  # points and open contours outline no area
            points = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64).reshape(-1, 3)
            depth = points @ normal
            if np.ptp(depth) > PLANAR_TOL * step:
                raise ValueError(f"ROI {name!r}: a contour is not in a plane parallel to the images")
            k = int(np.argmin(np.abs(depths - depth.mean())))
            if abs(depths[k] - depth.mean()) > step / 2:
                logger.info("ROI %r: a contour at %.2f mm lies off the series; skipped", name, depth.mean())
                continue
            offset = points - origins[k]
            rc = np.column_stack([offset @ col_dir, offset @ row_dir])
            mask[k] ^= _fill(rc, (rows, columns))
        out[name] = np.transpose(mask, (2, 1, 0))
    return out


def rtstruct_to_labels(
    rtstruct: str | os.PathLike | Any, series: DicomSeries, label_of: Mapping[str, int] | None = None
) -> np.ndarray:
    """A uint8 label map ``(columns, rows, images)`` on ``series``' grid from the ROIs of ``rtstruct``.

    Args:
        rtstruct: the RTSTRUCT file (or dataset).
        series: the image series it outlines (:func:`~unet_med.dicom.series.read_series`).
        label_of: ROI name to label value; ROIs not named are left out. Default: every ROI, 1, 2, ... in order.

    Raises:
        ValueError: see :func:`roi_masks`; also an ROI named in ``label_of`` that the RTSTRUCT lacks.
    """
    masks = roi_masks(rtstruct, series)
    if label_of is None:
        label_of = {name: i for i, name in enumerate(masks, start=1)}
    missing = sorted(set(label_of) - set(masks))
    if missing:
        raise ValueError(
            f"the RTSTRUCT has no ROI {', '.join(map(repr, missing))} (it has {', '.join(map(repr, masks))})"
        )
    labels = np.zeros(series.shape, dtype=np.uint8)
    for name, value in label_of.items():
        labels[masks[name]] = value
    return labels
