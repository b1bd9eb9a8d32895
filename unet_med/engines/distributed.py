"""Helpers for ``torch.distributed`` training through bundle configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ignite.handlers import ProgressBar
from monai.handlers import StatsHandler, TensorBoardImageHandler, TensorBoardStatsHandler

from unet_med.engines.overlay import OverlayImageHandler

__all__ = ["is_rank_zero", "rank_zero_handlers"]

#: Handlers that only print or write files; every other handler (validation, LR schedule, early stopping,
#: checkpoint loading) must run on every rank to keep them in step.
WRITER_HANDLERS = (StatsHandler, TensorBoardStatsHandler, TensorBoardImageHandler, ProgressBar, OverlayImageHandler)


def is_rank_zero() -> bool:
    """True outside distributed runs and on rank 0."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0


def rank_zero_handlers(handlers: Sequence[Any]) -> list[Any]:
    """Drops the handlers that only print or write (logs, TensorBoard, progress bars) on ranks other than 0."""
    return list(handlers) if is_rank_zero() else [h for h in handlers if not isinstance(h, WRITER_HANDLERS)]
