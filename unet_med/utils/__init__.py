"""Small helpers shared by the library."""

from __future__ import annotations

from unet_med.utils.distributed import is_distributed, is_rank_zero
from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = ["atomic_path", "atomic_write_json", "is_distributed", "is_rank_zero"]
