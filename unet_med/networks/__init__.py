"""Segmentation networks and the layers they add to MONAI's."""

from __future__ import annotations

from unet_med.networks.norm import InstanceNorm2d, InstanceNorm3d, instance_norm, swap_instance_norms
from unet_med.networks.unet import UNet

__all__ = ["InstanceNorm2d", "InstanceNorm3d", "UNet", "instance_norm", "swap_instance_norms"]
