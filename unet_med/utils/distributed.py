"""Which process of a ``torch.distributed`` run this is."""

from __future__ import annotations

import torch

__all__ = ["is_distributed", "is_rank_zero"]


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_rank_zero() -> bool:
    """True outside distributed runs and on rank 0.

    Bundle configs disable handlers that only print or write files on the other ranks with
    ``"_disabled_": "$not unet_med.utils.is_rank_zero()"``; MONAI then never constructs them.
    """
    return not is_distributed() or torch.distributed.get_rank() == 0
