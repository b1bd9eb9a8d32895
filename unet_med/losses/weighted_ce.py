"""Cross-entropy with a weight per pixel, the loss of the U-Net paper.

MONAI's losses weigh classes, not pixels. The weights travel with the label through the trainer: the target is
``(B, 2, *spatial)``, channel 0 the class map and channel 1 the weights (see
:class:`unet_med.transforms.BorderWeightd` and ``microscopy_augmentation(border_weights=...)``), so MONAI's
``SupervisedTrainer`` calls it as any loss, ``loss(logits, target)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PixelWeightedCrossEntropyLoss"]


class PixelWeightedCrossEntropyLoss(nn.Module):
    """``mean(w(x) * CE(x))`` over the pixels of the batch; ``target`` holds the class map and the weights."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim != input.ndim or target.shape[1] != 2 or target.shape[2:] != input.shape[2:]:
            raise ValueError(
                "PixelWeightedCrossEntropyLoss needs the target as (B, 2, *spatial): class map and weights, "
                f"got {tuple(target.shape)} for logits {tuple(input.shape)}"
            )
        classes = target[:, 0].round().long()
        weights = target[:, 1].float()
        ce = F.cross_entropy(input.float(), classes, reduction="none")
        return (ce * weights).mean()
