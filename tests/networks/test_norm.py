"""The layout-keeping instance norm equals torch's, keeps channels-last when compiled, and keeps the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unet_med.networks import InstanceNorm2d, InstanceNorm3d, UNet, instance_norm, swap_instance_norms

torch.set_num_threads(2)


def _layout(dims: int) -> torch.memory_format:
    return torch.channels_last_3d if dims == 3 else torch.channels_last


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_elementwise_form_equals_torch_instance_norm(dims, affine, channels_last):
    torch.manual_seed(0)
    x = torch.randn(2, 5, *(7, 9, 6)[:dims]) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=_layout(dims))
    weight, bias = (torch.randn(5), torch.randn(5)) if affine else (None, None)
    out = instance_norm(x, weight, bias, eps=1e-5)
    torch.testing.assert_close(out, F.instance_norm(x, weight=weight, bias=bias, eps=1e-5), atol=1e-5, rtol=1e-5)
    assert out.is_contiguous(memory_format=_layout(dims)) == channels_last


def test_bf16_input_gives_bf16_close_to_float32():
    x = torch.randn(2, 4, 8, 8, 8)
    out = instance_norm(x.bfloat16(), None, None)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), F.instance_norm(x), atol=0.05, rtol=0.02)


@pytest.mark.parametrize(
    ("cls", "ref", "dims"), [(InstanceNorm2d, nn.InstanceNorm2d, 2), (InstanceNorm3d, nn.InstanceNorm3d, 3)]
)
def test_eager_forward_is_torch_bit_for_bit(cls, ref, dims):
    torch.manual_seed(0)
    ours, theirs = cls(6, affine=True), ref(6, affine=True)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 6, *(10, 8, 6)[:dims])
    assert torch.equal(ours(x), theirs(x))
    assert isinstance(ours, ref)  # inference fast paths that look for torch's class still find it


def test_unet_state_dict_is_unchanged_by_the_swap():
    torch.manual_seed(0)
    net = UNet(3, 1, 3, features=(4, 8, 16), norm=["instance", {"affine": True}])
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert norms and all(type(m) is InstanceNorm3d for m in norms)
    keys = set(net.state_dict())
    plain = UNet(3, 1, 3, features=(4, 8, 16), norm=["instance", {"affine": True}])
    for parent in plain.modules():  # back to torch's class, as a network built before this change
        for name, child in parent.named_children():
            if isinstance(child, InstanceNorm3d):
                setattr(parent, name, nn.InstanceNorm3d(child.num_features, affine=True))
    assert set(plain.state_dict()) == keys
    net.load_state_dict(plain.state_dict())
    x = torch.randn(1, 1, 16, 16, 8)
    assert torch.equal(net.eval()(x), plain.eval()(x))
    assert swap_instance_norms(plain) is plain and set(plain.state_dict()) == keys


def test_compiled_norm_keeps_channels_last_and_matches():
    torch.manual_seed(0)
    norm = InstanceNorm3d(4, affine=True)
    x = torch.randn(2, 4, 6, 8, 4).contiguous(memory_format=torch.channels_last_3d)
    out = torch.compile(norm, dynamic=False, backend="aot_eager")(x)  # traced: the element-wise form
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, nn.InstanceNorm3d(4, affine=True)(x), atol=1e-5, rtol=1e-5)
