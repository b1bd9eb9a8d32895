"""Helpers for ``torch.distributed`` training through bundle configs."""

from __future__ import annotations

import torch

__all__ = ["is_rank_zero"]


def is_rank_zero() -> bool:
    """True outside distributed runs and on rank 0.

    Bundle configs disable handlers that only print or write files on the other ranks with
    ``"_disabled_": "$not unet_med.engines.is_rank_zero()"``; MONAI then never constructs them.
    """
    return (
        not (torch.distributed.is_available() and torch.distributed.is_initialized())
        or torch.distributed.get_rank() == 0
    )
