"""Foreground z-score normalisation."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

from unet_med.transforms import ZScoreForegroundd, zscore_foreground


def test_constant_negative_background_is_excluded_and_zeroed():
    image = torch.full((2, 10, 10, 4), -5.0)
    image[0, 2:8, 2:8] = torch.linspace(100, 300, 36 * 4).reshape(6, 6, 4)
    image[1, 2:8, 2:8] = 7.0 + torch.arange(36 * 4, dtype=torch.float32).reshape(6, 6, 4)
    out = zscore_foreground(image)
    for c in range(2):
        inside = out[c, 2:8, 2:8]
        assert abs(float(inside.mean())) < 1e-5 and abs(float(inside.std()) - 1) < 1e-3
    assert float(out[:, 0].abs().max()) == 0.0


def test_scale_invariant_per_case_and_constant_channel():
    image = torch.rand(1, 8, 8, 8)
    torch.testing.assert_close(zscore_foreground(image), zscore_foreground(image * 1e5 + 3), atol=1e-4, rtol=1e-4)
    assert float(zscore_foreground(torch.ones(1, 4, 4, 4)).abs().max()) == 0.0


def test_dictionary_version_keeps_metadata():
    image = MetaTensor(torch.rand(1, 6, 6, 6), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    out = ZScoreForegroundd(keys="image")({"image": image})["image"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine)
