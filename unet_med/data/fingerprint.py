"""A dataset fingerprint (the nnU-Net idea): spacings, shapes, intensities per channel and class frequencies.

Geometry is reported in RAS axis order, the order the bundles' preprocessing (``Orientationd("RAS")``) gives the
network, so a proposed ``pixdim`` or patch size applies to the right axes whatever the files' own orientation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np

from unet_med.data.datalist import channel_names_from_dataset_json, labels_from_dataset_json, load_datalist
from unet_med.data.readers import read_array

__all__ = ["fingerprint_dataset"]


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
