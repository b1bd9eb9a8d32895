"""Contract tests for unet_med.networks.UNet."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks import one_hot

from unet_med.networks import UNet

torch.set_num_threads(2)

TINY = (4, 8, 16)  # two poolings: total factor 4 per axis


def _net(dims: int, **kwargs) -> UNet:
    kwargs.setdefault("features", TINY)
    return UNet(dims, kwargs.pop("in_channels", 1), kwargs.pop("out_channels", 2), **kwargs)


def test_classic_2d_parameter_count():
    net = UNet(2, in_channels=1, out_channels=2)
    assert sum(p.numel() for p in net.parameters()) == 31_030_658


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("in_channels,out_channels", [(1, 2), (3, 5)])
@pytest.mark.parametrize(
    "norm", [None, "batch", "instance", ["group", {"num_groups": 2}], ["instance", {"affine": True}]]
)
def test_output_shape(dims, in_channels, out_channels, norm):
    net = _net(dims, in_channels=in_channels, out_channels=out_channels, norm=norm, dropout=0.1).eval()
    spatial = (12, 20, 8)[:dims]  # divisible by 4 but not square
    out = net(torch.rand(2, in_channels, *spatial))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, out_channels, *spatial)


@pytest.mark.parametrize(
    "dims,spatial,message",
    [
        (2, (13, 16), "pad to [16, 16]"),
        (3, (16, 18, 7), "pad to [16, 20, 8]"),
    ],
)
def test_indivisible_size_says_what_to_pad_to(dims, spatial, message):
    net = _net(dims)
    with pytest.raises(ValueError, match=r"not divisible by \[4, 4") as err:
        net(torch.rand(1, 1, *spatial))
    assert message in str(err.value)


def test_anisotropic_pooling_keeps_thick_axis():
    net = UNet(3, 1, 3, features=(4, 8, 16, 32), pool_sizes=[(2, 2, 1), (2, 2, 1), 2], norm="instance").eval()
    assert net.divisor == [8, 8, 2]
    assert net.upsample[0].stride == (2, 2, 2) and net.upsample[2].stride == (2, 2, 1)
    out = net(torch.rand(1, 1, 16, 24, 6))  # 6 slices: only one pooling along the last axis
    assert out.shape == (1, 3, 16, 24, 6)
    with pytest.raises(ValueError, match="pad to"):
        net(torch.rand(1, 1, 16, 24, 5))


def test_pool_sizes_broadcast_per_axis_tuple():
    net = UNet(3, 1, 2, features=(4, 8, 16), pool_sizes=(2, 2, 1))
    assert net.pool_sizes == [(2, 2, 1), (2, 2, 1)]
    assert net.divisor == [4, 4, 1]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"spatial_dims": 1}, "spatial_dims must be 2 or 3, got 1"),
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3, got 4"),
        ({"features": (8,)}, "at least two"),
        ({"features": (8, 0)}, "at least two positive"),
        ({"in_channels": 0}, "in_channels"),
        ({"pool_sizes": [2, 2, 2, 2]}, "needs 2 entries"),
        ({"pool_sizes": [(2, 2), 2]}, "pool size"),
        ({"pool_sizes": 0}, "pool size"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": TINY} | kwargs
    with pytest.raises(ValueError, match=match):
        UNet(**args)


@pytest.mark.parametrize("dims", [2, 3])
def test_wrong_input_rank_and_channels_raise(dims):
    net = _net(dims, in_channels=2)
    with pytest.raises(ValueError, match="input channel"):
        net(torch.rand(1, 1, *(8,) * dims))
    with pytest.raises(ValueError, match=f"expected a {dims + 2}D input"):
        net(torch.rand(2, *(8,) * dims))


@pytest.mark.parametrize("dims", [2, 3])
def test_gradients_reach_first_layer(dims):
    net = _net(dims, norm="batch")
    net(torch.rand(2, 1, *(8,) * dims)).sum().backward()
    first = net.encoder[0][0].conv.weight
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_deep_supervision_list_in_training_single_tensor_in_eval():
    net = UNet(3, 1, 3, features=(4, 8, 16, 32), deep_supervision=True)
    x = torch.rand(2, 1, 16, 16, 8)
    outs = net.train()(x)
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 16, 8), (8, 8, 4), (4, 4, 2)]
    assert all(o.shape[:2] == (2, 3) for o in outs)
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 16, 16, 8)
    # The auxiliary heads exist only with deep supervision, so plain checkpoints stay compatible.
    assert not any(k.startswith("aux_heads") for k in UNet(3, 1, 3, features=(4, 8, 16, 32)).state_dict())


def test_state_dict_round_trip(tmp_path):
    net = _net(3, norm="batch").eval()
    x = torch.rand(1, 1, 8, 8, 8)
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    other = _net(3, norm="batch").eval()
    other.load_state_dict(torch.load(path, weights_only=True))
    torch.testing.assert_close(other(x), net(x))
    assert list(net.state_dict())[:2] == ["encoder.0.0.conv.weight", "encoder.0.0.conv.bias"]


@pytest.mark.parametrize("dims", [2, 3])
def test_torchscript_script_and_trace_match_eager(dims):
    net = _net(dims, norm="instance").eval()
    x = torch.rand(1, 1, *(8,) * dims)
    expected = net(x)
    torch.testing.assert_close(torch.jit.script(net)(x), expected)
    torch.testing.assert_close(torch.jit.trace(net, x)(x), expected)
    with pytest.raises(torch.jit.Error, match="pad to"):
        torch.jit.script(net)(torch.rand(1, 1, *(9,) * dims))


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs the 'export' extra (onnxruntime)")
def test_onnx_matches_eager(tmp_path):
    import onnxruntime as ort

    net = _net(3, norm="instance").eval()
    x = torch.rand(1, 1, 8, 12, 8)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), net(x).detach(), rtol=1e-4, atol=1e-4)


def test_channels_last_and_bf16_autocast():
    net = _net(3, norm="instance").eval()
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.inference_mode():
        expected = net(x)
        fast = net.to(memory_format=torch.channels_last_3d)
        got = fast(x.to(memory_format=torch.channels_last_3d))
        torch.testing.assert_close(got.contiguous(), expected, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fast(x.to(memory_format=torch.channels_last_3d))
    assert low.dtype == torch.bfloat16
    assert (low.float().argmax(1) == expected.argmax(1)).float().mean() > 0.95


def test_torch_compile_matches_eager():
    net = _net(2).eval()
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(torch.compile(net)(x), net(x), rtol=1e-4, atol=1e-4)


def test_overfits_one_synthetic_image():
    from unet_med.data.synthetic import synthetic_image_2d

    torch.manual_seed(0)
    image, label = synthetic_image_2d(shape=(64, 64), num_classes=3, seed=1)
    x = torch.as_tensor(image, dtype=torch.float32)[None, None]
    x = (x - x.mean()) / x.std()
    y = torch.as_tensor(label, dtype=torch.long)[None, None]
    net = UNet(2, 1, 3, features=(16, 32, 64), norm="batch")
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        pred = net(x).argmax(1, keepdim=True)
    dice = DiceMetric(include_background=False)(one_hot(pred, 3), one_hot(y, 3)).mean().item()
    assert dice > 0.9, dice
