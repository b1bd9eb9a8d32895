"""Intensity normalisation MONAI lacks: z-score within the foreground of each channel."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["ZScoreForegroundd", "zscore_foreground"]


def zscore_foreground(image: torch.Tensor) -> torch.Tensor:
    """Z-scores each channel over the voxels above that channel's minimum; the rest become 0.

    MRI volumes mark "outside the body/brain" with one constant value: 0 in most data sets (MONAI's
    ``NormalizeIntensity(nonzero=True)`` handles that), but a constant negative value in others (skull-stripped
    BraTS). Masking ``> min`` covers both. A constant channel becomes all zeros.

    Args:
        image: ``(C, *spatial)``.

    Returns:
        A float32 tensor of the same shape (a ``MetaTensor`` keeps its metadata).
    """
    out = image.float().clone()
    for c in range(out.shape[0]):
        channel = out[c]
        mask = channel > channel.min()
        if not bool(mask.any()):
            channel.zero_()
            continue
        values = channel[mask]
        std = values.std() if values.numel() > 1 else values.new_tensor(0.0)
        channel[mask] = (values - values.mean()) / (std if float(std) > 0 else 1.0)
        channel[~mask] = 0.0
    return out


class ZScoreForegroundd(MapTransform):
    """Dictionary version of :func:`zscore_foreground`.

    Example::

        ZScoreForegroundd(keys="image")({"image": MetaTensor(torch.rand(2, 32, 32, 16))})
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            normalised = zscore_foreground(torch.as_tensor(image))
            d[key] = (
                MetaTensor(normalised, meta=image.meta, applied_operations=image.applied_operations)
                if isinstance(image, MetaTensor)
                else normalised
            )
        return d
