"""Checking a whole dataset before training, so that one bad file fails in seconds with a clear list, not mid-epoch.

:func:`check_dataset` looks at every case, collects every problem and raises a single :class:`DatasetError`
listing each bad file and what is wrong with it:

- a file is missing, unreadable or truncated (a truncated ``.nii.gz`` has a readable header, so the data are
  decompressed in full);
- the image or label has the wrong number of spatial dimensions (a 2D file where 3D is expected);
- the image has the wrong number of channels (summed over a per-channel file list, or the 4D axis);
- image and label differ in spatial shape, or in affine beyond a tolerance;
- the label has values outside ``0..num_classes-1`` or non-integer values (integral floats such as BraTS's
  float32 ``0.0..4.0`` are accepted), or the image holds NaN or infinity.

Headers are read first; voxel data only when ``check_values`` is true, one case per worker thread.

Example::

    items = load_datalist("/data/Task04_Hippocampus")
    check_dataset(items, num_classes=3, in_channels=1)  # returns None, or raises DatasetError:

    # DatasetError: 2 of 208 cases have problems:
    #   case 4 (/data/Task04_Hippocampus/imagesTr/hippocampus_008.nii.gz):
    #     - /data/Task04_Hippocampus/labelsTr/hippocampus_008.nii.gz: label values 5 outside 0..2 (num_classes=3)
    #   case 17 (/data/Task04_Hippocampus/imagesTr/hippocampus_030.nii.gz):
    #     - /data/Task04_Hippocampus/imagesTr/hippocampus_030.nii.gz: unreadable or truncated file, ...
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from unet_med.data.datalist import DatasetError
from unet_med.data.readers import ImageInfo, ImageReadError, read_array, read_header

__all__ = ["check_dataset"]

_MAX_VALUES = 8  # offending label values shown per file


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What every case must satisfy."""

    num_classes: int
    in_channels: int
    image_key: str
    label_key: str
    spatial_dims: int
    affine_atol: float
    check_values: bool
    label_values: tuple[int, ...] | str | None = None


def check_dataset(
    items: Sequence[dict[str, Any]],
    *,
    num_classes: int,
    in_channels: int,
    image_key: str = "image",
    label_key: str = "label",
    spatial_dims: int = 3,
    affine_atol: float = 1e-3,
    check_values: bool = True,
    num_workers: int | None = None,
    label_values: Sequence[int] | str | None = None,
) -> tuple[int, ...] | None:
    """Checks every case of a datalist and raises one error listing every problem found.

    Args:
        items: cases as from :func:`~unet_med.data.datalist.load_datalist`: ``{image_key: path | [paths],
            label_key: path}``.
        num_classes: number of classes including background; label values must be integers in
            ``0..num_classes-1`` (2 for a binary task).
        in_channels: channels the network expects per case (summed over a per-channel file list).
        image_key: key of the image path(s).
        label_key: key of the label path.
        spatial_dims: 2 or 3; every image and label must have that many spatial axes.
        affine_atol: largest tolerated absolute difference between image and label affine entries (mm).
        check_values: also read the voxel data: catches truncated files, NaN/inf images and bad label values.
            Without it only headers are read (fast, but a truncated ``.nii.gz`` goes unnoticed).
        num_workers: threads reading cases; default ``min(4, cpu count)``.
        label_values: what label files hold when they are not class indices ``0..num_classes-1``: a list of
            the values allowed (``[0, 255]`` for ISBI 2012 masks, mapped to classes by the bundle's transforms),
            or ``"instances"`` for instance maps (any non-negative integers, one per object).

    Returns:
        The integer label values found over all cases, sorted (for comparing with the task, see
        :func:`unet_med.data.task_match.check_task_match`); ``None`` when ``check_values`` is false.

    Raises:
        ValueError: a bad argument.
        DatasetError: at least one case has a problem. The message starts with a summary line
            (``"3 of 24 cases have problems:"``) and then names each bad file and what is wrong; the
            ``problems`` attribute holds the same, as ``{case index: [problem, ...]}``.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts background, so it is at least 2 (2 for a binary task); got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}")
    if affine_atol < 0:
        raise ValueError(f"affine_atol must be non-negative, got {affine_atol}")
    if not items:
        raise DatasetError("no cases to check: the datalist is empty")
    if isinstance(label_values, str) and label_values != "instances":
        raise ValueError(f"label_values must be a list of values or 'instances', got {label_values!r}")
    values = label_values if label_values is None or isinstance(label_values, str) else tuple(map(int, label_values))
    spec = _Spec(num_classes, in_channels, image_key, label_key, spatial_dims, float(affine_atol), check_values, values)
    workers = max(1, num_workers if num_workers is not None else min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda item: _check_case(item, spec), items))
    problems = {i: found for i, (found, _) in enumerate(results) if found}
    if not problems:
        if not check_values:
            return None
        return tuple(sorted(set().union(*(values for _, values in results))))
    n = len(problems)
    lines = [f"{n} of {len(items)} cases {'has' if n == 1 else 'have'} problems:"]
    for i, found in problems.items():
        lines.append(f"  case {i} ({_case_name(items[i], image_key)}):")
        lines.extend(f"    - {p}" for p in found)
    raise DatasetError("\n".join(lines), problems)


def _case_name(item: Any, image_key: str) -> str:
    image = item.get(image_key) if isinstance(item, dict) else None
    if isinstance(image, (list, tuple)) and image:
        image = image[0]
    return str(image) if image else "no image"


def _paths(value: Any) -> list[Path] | None:
    """The path(s) of an item entry, or ``None`` when the entry is not a path or a non-empty list of paths."""
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [Path(v) for v in value]
    return None


def _check_case(item: Any, spec: _Spec) -> tuple[list[str], set[int]]:
    """Every problem of one case, each naming the file concerned, and the integer values its label holds."""
    if not isinstance(item, dict):
        return [f"expected a dict with '{spec.image_key}' and '{spec.label_key}', got {type(item).__name__}"], set()
    problems: list[str] = []
    found: set[int] = set()
    images = _paths(item.get(spec.image_key))
    labels = _paths(item.get(spec.label_key))
    if images is None:
        problems.append(f"no '{spec.image_key}' path or path list (got {item.get(spec.image_key)!r})")
    if labels is None or len(labels) != 1:
        problems.append(f"no single '{spec.label_key}' path (got {item.get(spec.label_key)!r})")
    images, label = images or [], labels[0] if labels and len(labels) == 1 else None

    headers: dict[Path, ImageInfo] = {}
    for path in [*images, *([label] if label else [])]:
        info = _header(path, problems)
        if info is not None:
            headers[path] = info

    # Dimensionality and channels, from the headers.
    for path, info in headers.items():
        role = "label" if path == label else "image"
        if info.spatial_dims != spec.spatial_dims:
            problems.append(
                f"{path}: {role} is {info.spatial_dims}D (spatial shape {info.shape}), expected {spec.spatial_dims}D"
            )
    if images and all(p in headers for p in images):
        total = sum(headers[p].channels for p in images)
        if total != spec.in_channels:
            where = images[0] if len(images) == 1 else f"{', '.join(map(str, images))} (channel list)"
            problems.append(f"{where}: image has {total} channels, expected in_channels={spec.in_channels}")
    if label in headers and headers[label].channels != 1:
        problems.append(f"{label}: label has {headers[label].channels} channels, expected a single label map")

    # Geometry: each image file against the label (or against the first image when the label is unusable).
    reference = label if label in headers else next((p for p in images if p in headers), None)
    ref_role = "label" if reference == label else "first image"
    for path in images:
        if path == reference or path not in headers or reference is None:
            continue
        problems.extend(
            _geometry_problems(path, headers[path], reference, headers[reference], ref_role, spec.affine_atol)
        )

    if spec.check_values:
        for path in headers:
            data = _data(path, problems)
            if data is None:
                continue
            if path == label:
                problems.extend(
                    f"{path}: label {p}" for p in _label_value_problems(data, spec.num_classes, spec.label_values)
                )
                found = _integer_values(data)
            elif np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.complexfloating):
                n_nan, n_inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
                if n_nan or n_inf:
                    problems.append(f"{path}: image has {n_nan} NaN and {n_inf} infinite voxels")
    return problems, found


def _integer_values(data: np.ndarray) -> set[int]:
    """The distinct integer values of a label map (non-finite and fractional values are left out)."""
    if data.dtype == np.bool_ or np.issubdtype(data.dtype, np.integer):
        return {int(v) for v in np.unique(data)}
    if not np.issubdtype(data.dtype, np.floating):
        return set()
    values = np.unique(data[np.isfinite(data)])
    return {int(v) for v in values[values == np.round(values)]}


def _header(path: Path, problems: list[str]) -> ImageInfo | None:
    if not path.is_file():
        problems.append(f"{path}: file missing")
        return None
    try:
        return read_header(path)
    except (ImageReadError, ValueError) as exc:
        problems.append(str(exc))  # the readers' messages start with the path
        return None


def _data(path: Path, problems: list[str]) -> np.ndarray | None:
    try:
        return read_array(path)[0]
    except (ImageReadError, ValueError, FileNotFoundError) as exc:
        problems.append(str(exc))
        return None


def _geometry_problems(
    path: Path, info: ImageInfo, ref_path: Path, ref: ImageInfo, role: str, atol: float
) -> list[str]:
    """Shape and affine differences between an image file and the case's reference (its label)."""
    if info.spatial_dims != ref.spatial_dims:
        return []  # already reported as a dimensionality problem
    if info.shape != ref.shape:
        return [f"{path}: image spatial shape {info.shape} differs from {role} shape {ref.shape} ({ref_path})"]
    diff = float(np.abs(info.affine - ref.affine).max())
    if diff > atol:
        return [
            f"{path}: image affine differs from the {role}'s by up to {diff:.4g} (tolerance {atol:g}; "
            f"image spacing {_fmt(info.spacing)}, origin {_fmt(info.affine[:3, 3])}; {role} spacing "
            f"{_fmt(ref.spacing)}, origin {_fmt(ref.affine[:3, 3])}) ({ref_path})"
        ]
    return []


def _label_value_problems(
    data: np.ndarray, num_classes: int, label_values: tuple[int, ...] | str | None = None
) -> list[str]:
    """Problems with a label map's values: non-finite, non-integer, or not among the allowed values."""
    if data.dtype == np.bool_:
        return []
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        return [f"has dtype {data.dtype}, expected integer class indices"]
    problems = []
    values = data
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            problems.append(f"has {int((~finite).sum())} NaN or infinite voxels")
            values = data[finite]
        fractional = values != np.round(values)
        if fractional.any():
            examples = np.unique(values[fractional])[:_MAX_VALUES]
            problems.append(
                f"has non-integer values {_fmt(examples, '[]')}, expected class indices 0..{num_classes - 1}"
            )
            values = values[~fractional]
    if label_values == "instances":
        if values.size and values.min() < 0:
            problems.append(f"has negative values {_fmt(np.unique(values[values < 0])[:_MAX_VALUES], '[]')}, "
                            "expected instance ids 0 (background), 1, 2, ...")  # fmt: skip
        return problems
    if label_values is not None:
        bad = np.setdiff1d(np.unique(values), np.asarray(label_values))
        if bad.size:
            problems.append(f"values {_fmt(bad[:_MAX_VALUES], '[]')} not among the expected {_fmt(label_values, '[]')}")
        return problems
    if values.size and (values.min() < 0 or values.max() > num_classes - 1):
        bad = np.unique(values[(values < 0) | (values > num_classes - 1)])
        shown = _fmt(bad[:_MAX_VALUES], "[]")
        shown += f" ... ({bad.size} distinct)" if bad.size > _MAX_VALUES else ""
        problems.append(f"values {shown} outside 0..{num_classes - 1} (num_classes={num_classes})")
    return problems


def _fmt(values: Any, brackets: str = "()") -> str:
    """Numbers as plain short text: ``(1, 1, 2.5)`` rather than ``(np.float64(1.0), ...)``."""
    return brackets[0] + ", ".join(f"{float(v):g}" for v in np.ravel(np.asarray(values))) + brackets[1]
