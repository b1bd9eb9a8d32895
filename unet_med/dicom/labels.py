"""A DICOM series with an RTSTRUCT or a SEG as image + label, for training, evaluation and cross-validation.

A datalist entry names the series folder as the image and the RTSTRUCT or SEG file as the label::

    {"image": "STS_019/CT/image", "label": "STS_019/CT/mask/RS.dcm"}

:class:`LoadDicomLabeld` replaces the label path with a label map on the series' voxel grid, with the affine MONAI's
readers give the series (``SITKReader``), so the rest of a pipeline (``EnsureChannelFirstd``, ``Orientationd``,
``Spacingd``, ...) treats it like a NIfTI label. RTSTRUCT contours are placed by position
(:mod:`~unet_med.dicom.rtstruct_labels`); SEG frames by the source images they reference, or, for a SEG made on
another copy of the series, by position in the Frame of Reference. Put it before the ``LoadImaged`` of the
image (it reads the image path) or after it (it then reads the image's ``filename_or_obj``).

Example::

    load_label = LoadDicomLabeld(keys="label", label_of={"GTV_Mass_CT": 1})
    item = load_label({"image": "STS_019/CT/image", "label": "STS_019/CT/mask/RS.dcm"})
    item["label"].shape  # (136, 134, 47), uint8, affine = the series' (RAS)
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from unet_med.dicom.series import DicomSeries, read_series

__all__ = ["LoadDicomLabeld", "dicom_labels", "seg_to_labels"]


def seg_to_labels(seg_path: str | os.PathLike, series: DicomSeries, label_of: Mapping[str, int] | None = None) -> Any:
    """A uint8 label map ``(columns, rows, images)`` on ``series``' grid from a DICOM SEG's segments.

    Args:
        seg_path: the SEG file.
        series: the image series it segments.
        label_of: segment label to label value; default segment number ``n`` gives label ``n``.

    Raises:
        ValueError: a segment named in ``label_of`` is absent, or the SEG lies on another grid.
    """
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    numbers = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}
    label_of = dict(label_of) if label_of is not None else {name: n for name, n in numbers.items()}
    missing = sorted(set(label_of) - set(numbers))
    if missing:
        raise ValueError(f"{seg_path}: no segment {', '.join(map(repr, missing))} (it has {', '.join(numbers)})")
    uids = [str(ds.SOPInstanceUID) for ds in series.datasets]
    referenced = {str(u) for _, _, u in seg.get_source_image_uids()}
    labels = np.zeros(series.shape, dtype=np.uint8)
    for name, value in label_of.items():
        if referenced & set(uids):
            frames = seg.get_pixels_by_source_instance(uids, segment_numbers=[numbers[name]])[..., 0]
        else:  # a SEG made on another copy of the series: by position in the Frame of Reference
            frames = _by_position(seg, series, numbers[name], seg_path)
        labels[np.transpose(frames, (2, 1, 0)) > 0] = value
    return labels


def _by_position(seg: Any, series: DicomSeries, number: int, path: Any) -> np.ndarray:
    """One segment ``(images, rows, columns)`` of ``seg`` matched to ``series`` by geometry."""
    import highdicom as hd

    if str(seg.FrameOfReferenceUID) != series.frame_of_reference_uid:
        raise ValueError(f"{path}: neither its source images nor its Frame of Reference are the series'")
    affine = series.affine_lps[:, [2, 1, 0, 3]]  # highdicom indexes (image, row, column)
    shape = series.shape[::-1]
    geometry = hd.VolumeGeometry(affine, shape, "PATIENT", frame_of_reference_uid=series.frame_of_reference_uid)
    volume = seg.get_volume(segment_numbers=[number], combine_segments=True).match_geometry(geometry)
    return np.asarray(volume.array)


def dicom_labels(path: str | os.PathLike, series: DicomSeries, label_of: Mapping[str, int] | None = None) -> Any:
    """The label map of an RTSTRUCT or a SEG file on ``series``' grid (see :func:`seg_to_labels`).

    Raises:
        ValueError: the file is neither an RTSTRUCT nor a SEG, or see the readers.
    """
    import pydicom

    from unet_med.dicom.rtstruct_labels import rtstruct_to_labels

    modality = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality", ""))
    if modality == "RTSTRUCT":
        return rtstruct_to_labels(path, series, label_of)
    if modality == "SEG":
        return seg_to_labels(path, series, label_of)
    raise ValueError(f"{path}: a {modality or 'non-DICOM'} object, not an RTSTRUCT or a SEG: cannot be a label")


class LoadDicomLabeld(MapTransform):
    """Loads RTSTRUCT or SEG labels onto the image's DICOM series grid (see the module's text).

    Args:
        keys: the label keys (paths to ``.dcm`` files; other values are left as they are).
        image_key: the key of the series folder (a path, or an image loaded from it).
        label_of: ROI name / segment label to label value (default: each ROI or segment in order, 1, 2, ...).
        series_uid: the series to read when the folder holds several.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        image_key: str = "image",
        label_of: Mapping[str, int] | None = None,
        series_uid: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.label_of = dict(label_of) if label_of is not None else None
        self.series_uid = series_uid

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch
        from monai.data import MetaTensor
        from monai.utils import MetaKeys, SpaceKeys

        d = dict(data)
        image = d[self.image_key]
        folder = image if isinstance(image, (str, os.PathLike)) else getattr(image, "meta", {}).get("filename_or_obj")
        series = None
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)) or not str(path).lower().endswith(".dcm"):
                continue
            if folder is None or not Path(str(folder)).is_dir():
                raise ValueError(f"{path}: a DICOM label needs its image to be a DICOM series folder")
            series = series or read_series(str(folder), self.series_uid)
            labels = dicom_labels(path, series, self.label_of)
            affine = torch.as_tensor(series.affine_ras, dtype=torch.float64)
            meta = {
                "filename_or_obj": str(path),
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.clone(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(series.shape),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: "no_channel",
            }
            d[key] = MetaTensor(torch.from_numpy(labels), meta=meta)
        return d
