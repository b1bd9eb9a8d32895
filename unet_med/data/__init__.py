"""The data layer: synthetic demo data (and, alongside, datalists, readers and dataset checks)."""

from __future__ import annotations

from unet_med.data.synthetic import make_demo_dataset_2d, make_demo_dataset_3d, synthetic_image_2d, synthetic_volume

__all__ = ["make_demo_dataset_2d", "make_demo_dataset_3d", "synthetic_image_2d", "synthetic_volume"]
