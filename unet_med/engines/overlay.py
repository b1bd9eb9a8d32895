"""TensorBoard overlays of validation predictions on their images."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.visualize import blend_images
from torch.utils.tensorboard import SummaryWriter

__all__ = ["OverlayImageHandler", "overlay_slice"]


def overlay_slice(image: torch.Tensor, label: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blends the axial slice with most foreground of ``label`` over ``image``.

    Args:
        image: ``(C, *spatial)``; the first channel is shown, scaled to [0, 1].
        label: ``(1, *spatial)`` class indices, or ``(K, *spatial)`` one-hot (argmax taken).

    Returns:
        An RGB image ``(3, H, W)`` in [0, 1].
    """
    image = torch.as_tensor(image).detach().float().cpu()[:1]
    label = torch.as_tensor(label).detach().cpu()
    label = label.argmax(0, keepdim=True) if label.shape[0] > 1 else label
    if image.ndim == 4:  # 3D: pick the slice along the last axis with the most foreground
        z = int((label > 0).sum(dim=(0, 1, 2)).argmax())
        image, label = image[..., z], label[..., z]
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    return np.asarray(blend_images(image, label.float(), alpha=alpha, cmap="hsv", rescale_arrays=False))


class OverlayImageHandler:
    """After each validation, logs the first case's truth and prediction overlaid on its image to TensorBoard.

    Attach to a MONAI evaluator run with ``decollate=True`` whose output holds ``image``, ``label`` and ``pred``
    per case. The step is the evaluator's epoch (the trainer's epoch during training).

    Args:
        log_dir: TensorBoard folder (shared with ``TensorBoardStatsHandler`` is fine).
        tag: tag prefix.
    """

    def __init__(self, log_dir: str | os.PathLike, tag: str = "val") -> None:
        self.log_dir = str(log_dir)
        self.tag = tag
        self._writer: SummaryWriter | None = None
        self._last: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._keep_first)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _keep_first(self, engine: Engine) -> None:
        if self._last is None or engine.state.iteration == 1:
            output = engine.state.output
            self._last = output[0] if isinstance(output, list) else None

    def _write(self, engine: Engine) -> None:
        case, self._last = self._last, None
        if case is None or not all(k in case for k in ("image", "label", "pred")):
            return
        if self._writer is None:
            self._writer = SummaryWriter(log_dir=self.log_dir)
        step = engine.state.epoch
        self._writer.add_image(f"{self.tag}/truth_overlay", overlay_slice(case["image"], case["label"]), step)
        self._writer.add_image(f"{self.tag}/prediction_overlay", overlay_slice(case["image"], case["pred"]), step)
        self._writer.flush()
