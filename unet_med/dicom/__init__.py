"""DICOM in and out: series as a PACS exports them, DICOM SEG and RTSTRUCT results, RTSTRUCT contours as labels.

- :mod:`~unet_med.dicom.series`: one image series from a folder, checked to be a regular volume.
- :mod:`~unet_med.dicom.codes`: the coded concepts (category, type) of a bundle's classes.
- :mod:`~unet_med.dicom.seg`: DICOM SEG with highdicom.
- :mod:`~unet_med.dicom.rtstruct`: RTSTRUCT with pydicom.
- :mod:`~unet_med.dicom.rtstruct_labels`: RTSTRUCT contours back to a label map (by z position, even-odd rule).
- :mod:`~unet_med.dicom.labels`: a series with an RTSTRUCT or SEG as image + label (``LoadDicomLabeld``).
- :mod:`~unet_med.dicom.outputs`: the ``--format`` choices of ``unet-med predict``.

pydicom and highdicom are dependencies of unet_med; they are imported when a function here first needs them.
"""

from __future__ import annotations

from unet_med.dicom.codes import ClassConcept, class_concepts, display_color, to_code
from unet_med.dicom.labels import LoadDicomLabeld, dicom_labels, seg_to_labels
from unet_med.dicom.outputs import DicomResultWriter, parse_formats
from unet_med.dicom.rtstruct import rtstruct_dataset, slice_contours, write_rtstruct
from unet_med.dicom.rtstruct_labels import roi_masks, rtstruct_to_labels
from unet_med.dicom.seg import seg_dataset, write_seg
from unet_med.dicom.series import DicomSeries, SeriesError, list_series, read_series

__all__ = [
    "ClassConcept",
    "DicomResultWriter",
    "DicomSeries",
    "LoadDicomLabeld",
    "SeriesError",
    "class_concepts",
    "dicom_labels",
    "display_color",
    "list_series",
    "parse_formats",
    "read_series",
    "roi_masks",
    "rtstruct_dataset",
    "rtstruct_to_labels",
    "seg_dataset",
    "seg_to_labels",
    "slice_contours",
    "to_code",
    "write_rtstruct",
    "write_seg",
]
