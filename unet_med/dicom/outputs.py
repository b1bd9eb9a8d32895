"""The output formats of a prediction: ``nifti`` (the input's own format), ``dicom-seg`` and ``rtstruct``.

``unet-med predict --format nifti,dicom-seg`` and a bundle's ``output_format`` choose them. A DICOM series input
can have its mask written as DICOM SEG (``<case>_seg.dcm``) and RTSTRUCT (``<case>_rtstruct.dcm``) beside or
instead of the NIfTI mask. :class:`DicomResultWriter` holds what these need from the bundle (class names and codes,
name and version) and checks it before any case runs; for each case it builds every DICOM object first and writes
them only when all could be built, each atomically.

Example::

    formats = parse_formats("nifti,dicom-seg")  # ("nifti", "dicom-seg")
    writer = DicomResultWriter(["background", "tumour"], codes, ("sarcoma U-Net", "0.2.0"))
    writer.check(formats)  # ValueError when a class lacks its codes
    writer.write(labels, affine_ras, read_series("export/"), "out/", "case_1", formats)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_med.dicom.codes import class_concepts
from unet_med.dicom.series import DicomSeries
from unet_med.utils.io import atomic_save_dicom

__all__ = ["DICOM_FORMATS", "FORMATS", "DicomResultWriter", "dicom_output_path", "parse_formats"]

#: Every output format, the default first.
FORMATS = ("nifti", "dicom-seg", "rtstruct")
#: The DICOM formats and their file name endings after the case name.
DICOM_FORMATS = {"dicom-seg": "_seg.dcm", "rtstruct": "_rtstruct.dcm"}


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"nifti,dicom-seg"`` (or a list) as a tuple of known formats, without repeats.

    Raises:
        ValueError: an unknown format, or none.
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in out if f not in FORMATS]
    if unknown or not out:
        raise ValueError(f"output format {', '.join(unknown) or repr(formats)}: not one of {', '.join(FORMATS)}")
    return out


def dicom_output_path(case: str, output_dir: str | os.PathLike, fmt: str) -> Path:
    """``output_dir/<case>_seg.dcm`` for ``dicom-seg``, ``output_dir/<case>_rtstruct.dcm`` for ``rtstruct``."""
    return Path(output_dir) / f"{case}{DICOM_FORMATS[fmt]}"


@dataclasses.dataclass
class DicomResultWriter:
    """Writes a label map on a DICOM series' grid as DICOM SEG and / or RTSTRUCT.

    Args:
        class_names: the bundle's classes, background first.
        class_codes: the task's ``class_codes`` (name -> category and type), see :mod:`unet_med.dicom.codes`.
        algorithm: ``(name, version)`` of the bundle.
    """

    class_names: Sequence[str]
    class_codes: Mapping[str, Any]
    algorithm: tuple[str, str]

    def check(self, formats: Sequence[str]) -> None:
        """Refuses, before any case runs, a DICOM SEG for a bundle whose classes lack coded concepts.

        Raises:
            ValueError: names the first class without codes.
        """
        if "dicom-seg" in formats:
            for concept in class_concepts(self.class_names, self.class_codes):
                concept.codes()

    def datasets(
        self, labels: np.ndarray, affine_ras: np.ndarray | None, series: DicomSeries, formats: Sequence[str]
    ) -> dict[str, Any]:
        """The DICOM objects for ``formats`` (``{format: dataset}``), built and checked, nothing written yet."""
        from unet_med.dicom.rtstruct import rtstruct_dataset
        from unet_med.dicom.seg import seg_dataset

        concepts = class_concepts(self.class_names, self.class_codes)
        labels = np.asarray(labels)
        built: dict[str, Any] = {}
        if "dicom-seg" in formats:
            built["dicom-seg"] = seg_dataset(labels, series, concepts, self.algorithm, affine_ras=affine_ras)
        if "rtstruct" in formats:
            built["rtstruct"] = rtstruct_dataset(labels, series, concepts, self.algorithm, affine_ras=affine_ras)
        return built

    @staticmethod
    def save(built: Mapping[str, Any], output_dir: str | os.PathLike, case: str) -> list[Path]:
        """Writes what :meth:`datasets` built, each file atomically; returns the paths."""
        return [atomic_save_dicom(ds, dicom_output_path(case, output_dir, fmt)) for fmt, ds in built.items()]

    def write(
        self,
        labels: np.ndarray,
        affine_ras: np.ndarray | None,
        series: DicomSeries,
        output_dir: str | os.PathLike,
        case: str,
        formats: Sequence[str],
    ) -> list[Path]:
        """:meth:`datasets` then :meth:`save`: ``labels`` ``(columns, rows, images)`` on ``series``' grid."""
        return self.save(self.datasets(labels, affine_ras, series, formats), output_dir, case)
