"""unet_med: U-Net segmentation for CT, MRI and microscopy on MONAI, shared as MONAI Bundles."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
