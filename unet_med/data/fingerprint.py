"""A dataset fingerprint (the nnU-Net idea): spacings, shapes, intensities per channel and class frequencies.

Geometry is reported in RAS axis order, the order the bundles' preprocessing (``Orientationd("RAS")``) gives the
network, so a proposed ``pixdim`` or patch size applies to the right axes whatever the files' own orientation.

Two uses: :func:`fingerprint_dataset` measures a dataset to plan a task (labels included);
:func:`input_fingerprint` summarises the training images a bundle has seen (the task's ``fingerprint``, no labels),
built from :func:`image_summary`, the one measurement that ``unet-med predict`` also takes of every input to check
it against the training data (:mod:`unet_med.inference.input_check`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np

from unet_med.data.datalist import channel_names_from_dataset_json, labels_from_dataset_json, load_datalist
from unet_med.data.readers import read_array

__all__ = ["fingerprint_dataset", "image_summary", "input_fingerprint"]

#: Largest number of voxels per channel the intensity percentiles of :func:`image_summary` are taken from.
SUMMARY_VOXELS = 1 << 20


def _ras(values: Sequence[float], affine: np.ndarray) -> list[float]:
    """Reorders per-array-axis values into RAS axis order."""
    ornt = nib.orientations.io_orientation(affine)
    out = [0.0] * len(values)
    for axis, (ras_axis, _) in enumerate(ornt):
        out[int(ras_axis)] = float(values[axis])
    return out


def _channels(item_image: str | list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every channel of a case as ``(spatial array, affine)``."""
    paths = item_image if isinstance(item_image, list) else [item_image]
    channels = []
    for path in paths:
        data, affine = read_array(path)
        n_spatial = 3 if data.ndim >= 3 else 2
        if data.ndim > n_spatial:
            channels += [(data[..., c], affine) for c in range(data.shape[-1])]
        else:
            channels.append((data, affine))
    return channels


def fingerprint_dataset(dataset_dir: str | os.PathLike, samples_per_case: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Measures a dataset folder (MSD or paired folders, see :func:`unet_med.data.load_datalist`).

    Args:
        dataset_dir: the dataset folder.
        samples_per_case: foreground voxels sampled per case and channel for the intensity statistics.
        seed: seed of the sampling.

    Returns:
        A JSON-safe dict: ``num_cases``; ``spacings`` and ``shapes`` per case (RAS order, mm and voxels);
        ``channel_names``; ``intensity`` per channel over foreground (label > 0) voxels: mean, std, min, max,
        percentile_00_5, percentile_99_5, median; ``class_names``; ``class_fraction`` (voxel share of each label
        value over all cases); ``modality`` per channel from ``dataset.json`` when it has one.
    """
    rng = np.random.default_rng(seed)
    items = load_datalist(dataset_dir)
    spacings: list[list[float]] = []
    shapes: list[list[int]] = []
    samples: list[list[np.ndarray]] = []
    class_counts: dict[int, int] = {}
    for item in items:
        label, label_affine = read_array(item["label"])
        label = np.rint(label).astype(np.int64)
        zooms = np.sqrt((label_affine[:3, :3] ** 2).sum(axis=0))[: label.ndim]
        spacings.append(_ras(list(zooms), label_affine))
        shapes.append([int(s) for s in _ras(list(label.shape), label_affine)])
        values, counts = np.unique(label, return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            class_counts[v] = class_counts.get(v, 0) + n
        foreground = label > 0
        for c, (channel, _) in enumerate(_channels(item["image"])):
            if len(samples) <= c:
                samples.append([])
            voxels = channel[foreground] if foreground.any() else channel.ravel()
            take = min(samples_per_case, voxels.size)
            samples[c].append(rng.choice(voxels, size=take, replace=False).astype(np.float64))
    intensity = []
    for channel_samples in samples:
        v = np.concatenate(channel_samples)
        intensity.append(
            {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "min": float(v.min()),
                "max": float(v.max()),
                "median": float(np.median(v)),
                "percentile_00_5": float(np.percentile(v, 0.5)),
                "percentile_99_5": float(np.percentile(v, 99.5)),
            }
        )
    total = sum(class_counts.values())
    labels = labels_from_dataset_json(dataset_dir)
    channel_names = channel_names_from_dataset_json(dataset_dir)
    return {
        "dataset_dir": str(dataset_dir),
        "num_cases": len(items),
        "spacings": spacings,
        "shapes": shapes,
        "channel_names": channel_names or [f"channel_{c}" for c in range(len(samples))],
        "intensity": intensity,
        "class_names": [labels[k] for k in sorted(labels)] if labels else [str(k) for k in sorted(class_counts)],
        "class_fraction": {str(k): class_counts[k] / total for k in sorted(class_counts)},
    }


def _subsample(channel: np.ndarray, limit: int = SUMMARY_VOXELS) -> np.ndarray:
    """At most about ``limit`` voxels of ``channel`` on a regular grid (a strided view, then one small copy)."""
    step = max(1, int(np.ceil((channel.size / limit) ** (1.0 / max(channel.ndim, 1)))))
    return np.asarray(channel[(slice(None, None, step),) * channel.ndim], dtype=np.float64).ravel()


def image_summary(channels: Sequence[np.ndarray], affine: np.ndarray, spatial_dims: int) -> dict[str, Any]:
    """What the input check compares: geometry (3D only) and intensity percentiles per channel.

    Args:
        channels: one spatial array per channel, ``(X, Y[, Z])``.
        affine: the voxel-to-RAS affine, ``(d+1, d+1)`` or ``(4, 4)``.
        spatial_dims: 2 or 3. Pictures (2D) carry no physical size, so they get no ``spacing``/``extent``.

    Returns:
        ``channels``; for volumes ``spacing`` and ``extent`` (mm per RAS axis, ``extent = size * spacing``);
        ``intensity``: per channel ``p00_5``, ``p50``, ``p99_5`` (percentiles over at most
        :data:`SUMMARY_VOXELS` voxels on a regular grid) and ``median_position``, where the median sits between the
        0.5th and 99.5th percentiles (0 to 1, scale-free: the same for an MRI in any units).

    Example::

        image_summary([ct], affine, 3)  # {"channels": 1, "spacing": [0.98, 0.98, 3.27], "extent": [...], ...}
    """
    out: dict[str, Any] = {"channels": len(channels)}
    if spatial_dims == 3:
        affine = np.asarray(affine, dtype=np.float64)
        zooms = np.linalg.norm(affine[:3, :3], axis=0)
        shape = channels[0].shape[:3]
        out["spacing"] = [round(v, 4) for v in _ras(list(zooms), affine)]
        out["extent"] = [round(v, 2) for v in _ras([n * z for n, z in zip(shape, zooms)], affine)]
    intensity = []
    for channel in channels:
        lo, mid, hi = (float(v) for v in np.percentile(_subsample(channel), [0.5, 50.0, 99.5]))
        position = (mid - lo) / (hi - lo) if hi > lo else 0.5
        intensity.append({"p00_5": lo, "p50": mid, "p99_5": hi, "median_position": round(position, 4)})
    out["intensity"] = intensity
    return out


def input_fingerprint(dataset_dir: str | os.PathLike, spatial_dims: int = 3) -> dict[str, Any]:
    """The training images' fingerprint a task keeps (``configs/task.json`` ``fingerprint``), labels not read.

    Every value of :func:`image_summary` as its range over the cases: ``spacing``/``extent`` as ``{"min": [...],
    "max": [...]}`` per axis (volumes only), and per channel each intensity statistic as ``[lowest, highest]``.

    Args:
        dataset_dir: the dataset folder (MSD or paired folders, see :func:`unet_med.data.load_datalist`).
        spatial_dims: the task's, 2 or 3.

    Raises:
        ValueError: cases with different channel counts.
    """
    summaries = []
    for item in load_datalist(dataset_dir):
        channels = _channels(item["image"])
        summaries.append(image_summary([c for c, _ in channels], channels[0][1], spatial_dims))
    counts = {s["channels"] for s in summaries}
    if len(counts) != 1:
        raise ValueError(f"{dataset_dir}: cases with different channel counts {sorted(counts)}")
    out: dict[str, Any] = {"num_cases": len(summaries), "channels": counts.pop()}
    for key, digits in (("spacing", 4), ("extent", 1)):
        if spatial_dims == 3:
            values = np.array([s[key] for s in summaries])
            out[key] = {"min": values.min(0).round(digits).tolist(), "max": values.max(0).round(digits).tolist()}
    out["intensity"] = [
        {
            stat: _range([s["intensity"][c][stat] for s in summaries], 4 if stat == "median_position" else 2)
            for stat in ("p00_5", "p50", "p99_5", "median_position")
        }
        for c in range(out["channels"])
    ]
    return out


def _range(values: list[float], digits: int) -> list[float]:
    """``[min, max]`` rounded outwards to ``digits`` decimals, so rounding never narrows the range."""
    scale = 10.0**digits
    return [float(np.floor(min(values) * scale) / scale), float(np.ceil(max(values) * scale) / scale)]
