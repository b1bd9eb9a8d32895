"""Inference: precision-aware inferers and writers that save masks in the input's geometry."""

from __future__ import annotations

from unet_med.inference.autocast import AutocastInferer
from unet_med.inference.writers import AtomicNibabelWriter

__all__ = ["AtomicNibabelWriter", "AutocastInferer"]
