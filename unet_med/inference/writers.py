"""Image writers that never leave a half-written file."""

from __future__ import annotations

import os
from typing import Any

from monai.data import NibabelWriter, PILWriter

from unet_med.utils.io import atomic_path

__all__ = ["AtomicNibabelWriter", "AtomicPILWriter"]


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's ``NibabelWriter`` writing to a temporary file that is renamed over the target when complete.

    Use it as ``SaveImaged(..., writer="unet_med.inference.AtomicNibabelWriter")``.
    """

    def write(self, filename: str | os.PathLike, verbose: bool = False, **obj_kwargs: Any) -> None:
        with atomic_path(filename) as tmp:
            super().write(tmp, verbose=verbose, **obj_kwargs)


class AtomicPILWriter(PILWriter):
    """MONAI's ``PILWriter`` (PNG and other 2D formats) writing to a temporary file renamed when complete."""

    def write(self, filename: str | os.PathLike, verbose: bool = False, **kwargs: Any) -> None:
        with atomic_path(filename) as tmp:
            super().write(tmp, verbose=verbose, **kwargs)
