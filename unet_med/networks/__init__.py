"""Segmentation networks."""

from __future__ import annotations

from unet_med.networks.unet import UNet

__all__ = ["UNet"]
