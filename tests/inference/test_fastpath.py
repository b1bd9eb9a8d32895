"""Tests for unet_med.inference.fastpath: each replacement computes what the layer it replaces computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unet_med.inference.fastpath import (
    InstanceNormNd,
    PairwiseMaxPool,
    PointwiseConv,
    StridedTransposedConv,
    accelerate,
)
from unet_med.inference.runtime import uses_instance_norm
from unet_med.networks import UNet


@pytest.mark.parametrize("dims", [2, 3])
def test_each_replacement_matches_its_layer(dims):
    torch.manual_seed(0)
    shape = (2, 6, *(8, 12, 4)[:dims])
    x = torch.randn(shape)
    conv = (nn.Conv2d, nn.Conv3d)[dims - 2](6, 5, 1)
    up = (nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 2](6, 5, 2, stride=2)
    pool = (nn.MaxPool2d, nn.MaxPool3d)[dims - 2](2)
    norm = (nn.InstanceNorm2d, nn.InstanceNorm3d)[dims - 2](6, affine=True)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    for layer, fast in (
        (conv, PointwiseConv),
        (up, StridedTransposedConv),
        (pool, PairwiseMaxPool),
        (norm, InstanceNormNd),
    ):
        expected = layer(x)
        got = fast(layer)(x)
        assert got.shape == expected.shape, layer
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # channels-last input to the pointwise convolution, and an odd size that makes the pooling fall back
    if dims == 3:
        torch.testing.assert_close(PointwiseConv(conv)(x.contiguous(memory_format=torch.channels_last_3d)), conv(x))
    odd = torch.randn((1, 6, *(7, 9, 5)[:dims]))
    torch.testing.assert_close(PairwiseMaxPool(pool)(odd), pool(odd))
    anisotropic = (nn.MaxPool2d, nn.MaxPool3d)[dims - 2]((2, 1, 2)[:dims])
    torch.testing.assert_close(PairwiseMaxPool(anisotropic)(x), anisotropic(x))


def test_accelerate_keeps_the_networks_function():
    torch.manual_seed(0)
    net = UNet(3, 1, 3, features=(8, 16, 32, 64), norm=("instance", {"affine": True})).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    fast = accelerate(copy.deepcopy(net))
    kinds = {type(m) for m in fast.modules()}
    assert {PairwiseMaxPool, PointwiseConv, StridedTransposedConv, InstanceNormNd} <= kinds
    assert uses_instance_norm(fast)  # the predictor still keeps the contiguous layout
    x = torch.randn(2, 1, 32, 24, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), net(x), atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            agree = (fast(x).argmax(1) == net(x).argmax(1)).float().mean()
    assert agree > 0.98
    # layers outside the fast cases stay as they are
    kept = accelerate(nn.Sequential(nn.MaxPool3d(3, stride=2), nn.Conv3d(2, 2, 1, stride=2)))
    assert [type(m) for m in kept] == [nn.MaxPool3d, nn.Conv3d]
