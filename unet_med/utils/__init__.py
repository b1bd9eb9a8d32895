"""Small helpers shared by the library."""

from __future__ import annotations

from unet_med.utils.device import check_device
from unet_med.utils.distributed import is_distributed, is_rank_zero
from unet_med.utils.errors import UsageError, brief_errors, usage_error_in
from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = [
    "UsageError",
    "atomic_path",
    "atomic_write_json",
    "brief_errors",
    "check_device",
    "is_distributed",
    "is_rank_zero",
    "usage_error_in",
]
