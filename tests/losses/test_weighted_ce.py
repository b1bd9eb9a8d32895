"""Tests for unet_med.losses.PixelWeightedCrossEntropyLoss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unet_med.losses import PixelWeightedCrossEntropyLoss


def test_unit_weights_give_plain_cross_entropy_and_weights_scale_each_pixel():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, requires_grad=True)
    classes = torch.randint(0, 3, (2, 1, 5, 6)).float()
    loss = PixelWeightedCrossEntropyLoss()
    plain = loss(logits, torch.cat([classes, torch.ones_like(classes)], 1))
    torch.testing.assert_close(plain, F.cross_entropy(logits, classes[:, 0].long()))
    weights = torch.ones_like(classes)
    weights[0, 0, 2, 3] = 5.0
    per_pixel = F.cross_entropy(logits, classes[:, 0].long(), reduction="none")
    expected = (per_pixel.sum() + 4 * per_pixel[0, 2, 3]) / per_pixel.numel()
    weighted = loss(logits, torch.cat([classes, weights], 1))
    torch.testing.assert_close(weighted, expected)
    weighted.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_a_target_without_the_weight_channel_is_refused():
    with pytest.raises(ValueError, match=r"\(B, 2, \*spatial\)"):
        PixelWeightedCrossEntropyLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
