"""TensorBoard overlays."""

from __future__ import annotations

import torch

from unet_med.engines import overlay_slice


def test_overlay_picks_the_slice_with_most_foreground():
    image = torch.rand(1, 16, 16, 6)
    label = torch.zeros(1, 16, 16, 6)
    label[0, 4:12, 4:12, 4] = 2
    rgb = overlay_slice(image, label)
    assert rgb.shape == (3, 16, 16)
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    background = overlay_slice(image[..., 4], torch.zeros(1, 16, 16))
    assert not (rgb == background).all()  # the label is drawn on the chosen slice


def test_overlay_accepts_one_hot():
    one_hot = torch.zeros(3, 8, 8)
    one_hot[0] = 1
    one_hot[0, 2:4, 2:4], one_hot[1, 2:4, 2:4] = 0, 1
    assert overlay_slice(torch.rand(1, 8, 8), one_hot).shape == (3, 8, 8)
