"""RTSTRUCT from a label map, with pydicom: contours a treatment planning system imports over the CT.

One ROI per foreground class; on every image where the class is present, closed planar contours in patient
coordinates (mm, the source's Frame of Reference), from ``skimage.measure.find_contours`` at level 0.5 on the
zero-padded slice: the vertices lie half-way between a voxel inside and one outside, so a voxel centre is inside
the contours (even-odd rule: holes are contours inside contours) exactly when the voxel is in the mask.

Why not rt-utils (the library most tools use): 1.2.7, its newest release, writes ContourData values longer than the
16 characters a DS allows (float32 maths; ``dciodvfy`` errors), swaps row and column spacing for non-square pixels,
omits the Frame of Reference module, and installs a top-level ``tests`` package that shadows a project's own.
highdicom (the model for SEG) has no RTSTRUCT writer. So this module writes the Structure Set, ROI Contour and RT
ROI Observations modules itself, every number through ``format_number_as_ds`` (at most 16 characters), in float64.

Example::

    write_rtstruct(labels, read_series("export/"), class_concepts(names, codes), "out/case_rtstruct.dcm",
                   algorithm=("unet_med soft-tissue sarcoma CT U-Net", "0.2.0"))
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_med.dicom.codes import ClassConcept, display_color
from unet_med.dicom.seg import MANUFACTURER, check_on_grid
from unet_med.dicom.series import DicomSeries
from unet_med.dicom.source import PATIENT_STUDY_KEYWORDS, mended_headers, quiet_header_warnings
from unet_med.utils.io import atomic_save_dicom

__all__ = ["rtstruct_dataset", "slice_contours", "write_rtstruct"]


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a 2D boolean ``(rows, columns)`` mask, each ``(N, 2)`` (row, column) without repeating
    its first vertex; a pixel centre lies inside an odd number of them exactly when the pixel is in the mask."""
    from skimage.measure import find_contours

    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return []
    r0, c0 = rows[0], cols[0]
    crop = np.pad(mask[r0 : rows[-1] + 1, c0 : cols[-1] + 1].astype(np.uint8), 1)  # only the bounding box
    offset = np.array([r0 - 1.0, c0 - 1.0])
    return [c[:-1] + offset for c in find_contours(crop, 0.5) if len(c) > 3]


def _ds(values: np.ndarray) -> list[str]:
    from pydicom.valuerep import format_number_as_ds

    return [format_number_as_ds(float(v)) for v in values]


@quiet_header_warnings()
def rtstruct_dataset(
    labels: np.ndarray,
    series: DicomSeries,
    concepts: Sequence[ClassConcept],
    algorithm: tuple[str, str],
    affine_ras: np.ndarray | None = None,
    series_number: int = 902,
) -> Any:
    """The RT Structure Set (a ``pydicom.FileDataset``) for ``labels`` on ``series``' grid.

    Args:
        labels: ``(columns, rows, images)`` integer label map in MONAI's axis order on the series' grid.
        series: the source series (:func:`~unet_med.dicom.series.read_series`).
        concepts: one ROI per entry (name, label value, interpreted type).
        algorithm: ``(name, version)`` of the bundle (ROI generation algorithm, software versions).
        affine_ras: the mask's voxel-to-RAS affine, checked against the series' when given.
        series_number: the RTSTRUCT series' number.

    Raises:
        ValueError: the mask is not on the series' grid.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

    from unet_med import __version__

    check_on_grid(labels, affine_ras, series)
    source = mended_headers(series.datasets[:1])[0]
    name, version = algorithm
    now = datetime.datetime.now()
    sop_uid = generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    for keyword in PATIENT_STUDY_KEYWORDS:  # Patient and General Study, copied
        setattr(ds, keyword, source[keyword].value)
    ds.StudyInstanceUID = source.StudyInstanceUID
    # RT Series, General Equipment, Frame of Reference
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"{name} contours"[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = name[:64]
    ds.SoftwareVersions = f"unet_med {__version__}"
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "")
    # Structure Set
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "unet_med"
    ds.StructureSetName = name[:64]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(series)])

    frames = np.transpose(np.asarray(labels), (2, 1, 0))  # (images, rows, columns)
    rois, contours, observations = [], [], []
    for number, concept in enumerate(concepts, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = series.frame_of_reference_uid
        roi.ROIName = concept.name[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = f"{name} {version}"[:64]
        rois.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = list(display_color(concept.label))
        item.ContourSequence = DicomSequence(_contours(frames == concept.label, series))
        contours.append(item)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.ROIObservationLabel = concept.name[:16]
        obs.RTROIInterpretedType = concept.rt_interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _referenced_frame(series: DicomSeries) -> Any:
    """ReferencedFrameOfReferenceSequence item: the Frame of Reference, its study and every image of the series."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    images = []
    for src in series.datasets:
        image = Dataset()
        image.ReferencedSOPClassUID = src.SOPClassUID
        image.ReferencedSOPInstanceUID = src.SOPInstanceUID
        images.append(image)
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = series.series_uid
    referenced_series.ContourImageSequence = DicomSequence(images)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; what TPSs expect)
    study.ReferencedSOPInstanceUID = series.datasets[0].StudyInstanceUID
    study.RTReferencedSeriesSequence = DicomSequence([referenced_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


def _contours(masks: np.ndarray, series: DicomSeries) -> list[Any]:
    """ContourSequence items of one ROI: ``masks`` is ``(images, rows, columns)`` boolean."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    affine = series.affine_lps
    items = []
    for k in np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1)):
        src = series.datasets[k]
        image = Dataset()
        image.ReferencedSOPClassUID = src.SOPClassUID
        image.ReferencedSOPInstanceUID = src.SOPInstanceUID
        for contour in slice_contours(masks[k]):
            rows, cols = contour[:, 0], contour[:, 1]
            # voxel (i=column, j=row, k) to patient coordinates, float64
            points = affine[:3, 3] + np.outer(cols, affine[:3, 0]) + np.outer(rows, affine[:3, 1]) + k * affine[:3, 2]
            item = Dataset()
            item.ContourImageSequence = DicomSequence([image])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourData = _ds(points.ravel())
            items.append(item)
    return items


def write_rtstruct(
    labels: np.ndarray,
    series: DicomSeries,
    concepts: Sequence[ClassConcept],
    path: str | os.PathLike,
    algorithm: tuple[str, str],
    affine_ras: np.ndarray | None = None,
) -> Path:
    """Writes :func:`rtstruct_dataset` to ``path`` atomically (temp file + rename) and returns the path."""
    ds = rtstruct_dataset(labels, series, concepts, algorithm, affine_ras=affine_ras)
    return atomic_save_dicom(ds, path)
