"""Losses MONAI does not have."""

from __future__ import annotations

from unet_med.losses.weighted_ce import PixelWeightedCrossEntropyLoss

__all__ = ["PixelWeightedCrossEntropyLoss"]
