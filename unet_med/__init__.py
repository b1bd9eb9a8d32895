"""unet_med: U-Net segmentation for CT, MRI and microscopy on MONAI, shared as MONAI Bundles.

The subpackages load on first use (``import unet_med`` then ``unet_med.bundle.locate_bundle_root()`` works, as a
bundle config's ``"$import unet_med"`` needs), so importing the package itself stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "bundle", "data", "engines", "inference", "networks", "transforms", "utils"]

_SUBPACKAGES = {"bundle", "cli", "data", "engines", "fl", "inference", "networks", "transforms", "utils"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
