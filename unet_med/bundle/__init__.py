"""Bundle tooling: locating a bundle, preparing its data, verifying and packing it."""

from __future__ import annotations

from unet_med.bundle.paths import locate_bundle_root

__all__ = ["locate_bundle_root"]
