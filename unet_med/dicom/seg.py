"""DICOM SEG from a label map, with highdicom: the result a PACS viewer shows over the source series.

One BINARY segment per foreground class (:class:`~unet_med.dicom.codes.ClassConcept`, coded category and type),
every frame referencing its source image (SOP Instance UID) and the source's Frame of Reference, patient and study
copied from the source (:func:`~unet_med.dicom.source.mended_headers`), new Series and SOP Instance UIDs, and the
bundle as the algorithm (name, version, family "Artificial Intelligence"). BINARY rather than LABELMAP: the label
map SOP class is too new for Orthanc 1.10's DIMSE, dciodvfy 2022 and pynetdicom's default storage contexts.
Frames without any segment are left out (highdicom's default); an empty mask keeps every frame, so it is still a
valid SEG that says "nothing found".

Example::

    series = read_series("export/")
    write_seg(labels, series, class_concepts(["background", "tumour"], codes), "out/case_seg.dcm",
              algorithm=("unet_med soft-tissue sarcoma CT U-Net", "0.2.0"))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_med.dicom.codes import ClassConcept, display_color
from unet_med.dicom.series import DicomSeries
from unet_med.dicom.source import mended_headers, quiet_header_warnings
from unet_med.utils.io import atomic_save_dicom

__all__ = ["MANUFACTURER", "check_on_grid", "seg_dataset", "write_seg"]

#: The Manufacturer / model name written into results.
MANUFACTURER = "unet_med"


def check_on_grid(labels: np.ndarray, affine_ras: np.ndarray | None, series: DicomSeries) -> None:
    """Refuses a label map that is not on ``series``' voxel grid (shape ``(columns, rows, images)``, its affine).

    Raises:
        ValueError: the shape or the affine differ (the message gives both).
    """
    if tuple(labels.shape) != series.shape:
        raise ValueError(
            f"{series.folder}: the mask is {labels.shape}, the series {series.shape} (columns, rows, images)"
        )
    if affine_ras is not None and not np.allclose(
        np.asarray(affine_ras, dtype=np.float64), series.affine_ras, atol=1e-3
    ):
        raise ValueError(f"{series.folder}: the mask's affine is not the series' (not on its voxel grid)")


@quiet_header_warnings()
def seg_dataset(
    labels: np.ndarray,
    series: DicomSeries,
    concepts: Sequence[ClassConcept],
    algorithm: tuple[str, str],
    affine_ras: np.ndarray | None = None,
    series_number: int = 901,
) -> Any:
    """The ``highdicom.seg.Segmentation`` for ``labels`` on ``series``' grid.

    Args:
        labels: ``(columns, rows, images)`` integer label map in MONAI's axis order on the series' grid.
        series: the source series (:func:`~unet_med.dicom.series.read_series`).
        concepts: one per foreground class; ``labels`` values without one are ignored.
        algorithm: ``(name, version)`` of the bundle.
        affine_ras: the mask's voxel-to-RAS affine, checked against the series' when given.
        series_number: the SEG series' number.

    Raises:
        ValueError: the mask is not on the series' grid, or a class has no coded concept.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    check_on_grid(labels, affine_ras, series)
    name, version = algorithm
    family = codes.cid7162.ArtificialIntelligence
    descriptions = []
    for number, concept in enumerate(concepts, start=1):
        category, kind = concept.codes()
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=concept.name[:64],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=hd.AlgorithmIdentificationSequence(name[:64], family, version[:64]),
                display_color=hd.color.CIELabColor.from_rgb(*display_color(concept.label)),
            )
        )
    frames = np.transpose(np.asarray(labels), (2, 1, 0))  # (images, rows, columns), image k from series.datasets[k]
    stack = np.stack([frames == c.label for c in concepts], axis=-1)  # (images, rows, columns, segments)
    from unet_med import __version__

    return hd.seg.Segmentation(
        source_images=mended_headers(series.datasets),
        pixel_array=stack,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=name[:64],
        software_versions=f"unet_med {__version__}",
        device_serial_number="none",
        series_description=f"{name} segmentation"[:64],
        omit_empty_frames=bool(stack.any()),
    )


def write_seg(
    labels: np.ndarray,
    series: DicomSeries,
    concepts: Sequence[ClassConcept],
    path: str | os.PathLike,
    algorithm: tuple[str, str],
    affine_ras: np.ndarray | None = None,
) -> Path:
    """Writes :func:`seg_dataset` to ``path`` atomically (temp file + rename) and returns the path."""
    seg = seg_dataset(labels, series, concepts, algorithm, affine_ras=affine_ras)
    return atomic_save_dicom(seg, path)
