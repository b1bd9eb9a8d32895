"""Proposes preprocessing and network settings from a dataset fingerprint, as a bundle config overlay.

The rules follow nnU-Net's, simplified for CPU-sized networks:

- Target spacing: the median spacing per axis; for anisotropic data (largest / smallest median spacing > 3), the
  thick axis gets its 10th percentile instead, so thin-slice cases are not thrown away.
- Patch size: the median image size at the target spacing, shrunk along its largest axis (in mm) until it fits
  the voxel budget, then rounded to the network's pooling factor.
- Pooling: an axis is pooled at a stage while its current spacing is at most twice the smallest current spacing
  and its feature map stays at least ``min_feature_map`` voxels; thick axes are pooled later.
- Normalisation: CT (a channel named "CT") clips to the foreground's 0.5-99.5 percentiles and scales to [0, 1];
  anything else is MRI-like, z-scored per channel within the foreground.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from unet_med.utils.io import atomic_write_json

__all__ = ["plan_from_fingerprint", "write_plan"]


def _pooling(spacing: list[float], patch: list[int], max_pools: int, min_feature_map: int) -> list[list[int]]:
    """Per-stage, per-axis pool sizes (2 or 1)."""
    current_spacing = list(spacing)
    size = list(patch)
    stages: list[list[int]] = []
    for _ in range(max_pools):
        smallest = min(current_spacing)
        pool = [
            2 if current_spacing[a] <= 2 * smallest and size[a] // 2 >= min_feature_map else 1 for a in range(len(size))
        ]
        if not any(p == 2 for p in pool):
            break
        stages.append(pool)
        current_spacing = [s * p for s, p in zip(current_spacing, pool, strict=True)]
        size = [s // p for s, p in zip(size, pool, strict=True)]
    return stages


def plan_from_fingerprint(
    fingerprint: dict[str, Any],
    max_patch_voxels: int = 64**3,
    max_pools: int = 4,
    min_feature_map: int = 4,
    base_features: int = 16,
    max_features: int = 256,
) -> dict[str, Any]:
    """Turns a fingerprint from :func:`unet_med.data.fingerprint.fingerprint_dataset` into a config overlay.

    Args:
        fingerprint: the fingerprint.
        max_patch_voxels: voxel budget of a training patch (64^3 suits a 2-core CPU; raise it on a GPU).
        max_pools: most poolings (4 is the classic U-Net).
        min_feature_map: smallest feature-map size along a pooled axis.
        base_features: width of the first stage; doubled per stage up to ``max_features``.
        max_features: widest stage.

    Returns:
        An overlay for a bundle's ``train.json``: ``pixdim``, ``patch_size``, ``features``,
        ``network_def#pool_sizes``, ``modality``, ``in_channels``, ``num_classes``, ``class_names`` and, for CT,
        ``preprocessing#ct_window``.
    """
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    shapes = np.asarray(fingerprint["shapes"], dtype=float)
    target = np.median(spacings, axis=0)
    if target.max() / target.min() > 3:
        thick = int(target.argmax())
        target[thick] = np.percentile(spacings[:, thick], 10)
    median_shape = np.median(shapes * spacings / target, axis=0)
    patch = np.clip(np.round(median_shape), 16, 256).astype(int)  # 256: the task schema's bound per 3D axis
    while int(np.prod(patch)) > max_patch_voxels:
        axis = int(np.argmax(patch * target))  # shrink the longest side in mm
        patch[axis] = max(16, int(patch[axis] * 0.9))
        if np.all(patch == 16):
            break
    pools = _pooling(target.tolist(), patch.tolist(), max_pools, min_feature_map)
    divisor = np.prod(np.asarray(pools), axis=0).astype(int) if pools else np.ones(len(patch), dtype=int)
    patch = np.maximum(np.round(patch / divisor), 1).astype(int) * divisor
    features = [min(base_features * 2**i, max_features) for i in range(len(pools) + 1)]
    names = [n.lower() for n in fingerprint.get("channel_names", [])]
    is_ct = any(n == "ct" for n in names)
    overlay: dict[str, Any] = {
        "pixdim": [round(float(s), 4) for s in target],
        "patch_size": [int(p) for p in patch],
        "features": features,
        "network_def#pool_sizes": pools,
        "modality": "ct" if is_ct else "mri",
        "in_channels": len(fingerprint["intensity"]),
        "num_classes": len(fingerprint["class_names"]),
        "class_names": list(fingerprint["class_names"]),
    }
    if is_ct:
        ct = fingerprint["intensity"][names.index("ct")]
        overlay["preprocessing#ct_window"] = [round(ct["percentile_00_5"], 1), round(ct["percentile_99_5"], 1)]
    return overlay


def write_plan(path: str | os.PathLike, overlay: dict[str, Any]) -> None:
    """Writes an overlay atomically, for ``--config_file "['train.json', 'plan.json']"``."""
    atomic_write_json(path, overlay)
