"""The memory planner: estimates that grow with what they should, choices that fit a budget, one-line refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_med.bundle.task import load_task
from unet_med.data.readers import ImageInfo
from unet_med.inference.memory_plan import (
    MemoryPlanError,
    ModelSpec,
    check_weights,
    format_bytes,
    parse_bytes,
    plan_case,
    resampled_shape,
)
from unet_med.networks import UNet

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/task.json"))
BIG = 1 << 50  # a budget that fits anything


def info(shape=(200, 200, 100), spacing=(1.0, 1.0, 2.0), channels=1, dtype="int16") -> ImageInfo:
    return ImageInfo(Path("ct.nii.gz"), shape, channels, spacing, np.eye(4), np.dtype(dtype))


def spec(**changes) -> ModelSpec:
    base = ModelSpec(3, 1, 3, (16, 32, 64, 128), ((2, 2, 2),) * 3, (64, 64, 32), (2.0, 2.0, 2.0), 1)
    return dataclasses.replace(base, **changes)


def peak(case=None, model=None, **kwargs) -> int:
    return plan_case("ct.nii.gz", case or info(), model or spec(), budget=BIG, base=0, **kwargs).peak


def test_the_resampled_shape_follows_the_spacings():
    assert resampled_shape(info((100, 100, 50), (1.0, 1.0, 2.0)), (2.0, 2.0, 2.0)) == (50, 50, 50)
    assert resampled_shape(info((100, 100, 50)), None) == (100, 100, 50)


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ({"case": info((100, 100, 50))}, {"case": info((200, 200, 100))}),
        ({"case": info(channels=1)}, {"case": info(channels=2)}),
        ({"model": spec(pixdim=(2.0, 2.0, 2.0))}, {"model": spec(pixdim=(1.0, 1.0, 1.0))}),
        ({"model": spec(num_classes=2)}, {"model": spec(num_classes=10)}),
        ({"model": spec(patch_size=(64, 64, 32))}, {"model": spec(patch_size=(128, 128, 64))}),
        ({"model": spec(features=(16, 32, 64, 128))}, {"model": spec(features=(64, 128, 256, 512))}),
        ({"sw_batch_size": 1}, {"sw_batch_size": 8}),
        ({"compute_bytes": 2}, {"compute_bytes": 4}),
    ],
)
def test_estimates_grow_with_the_scan_the_spacing_the_window_and_the_widths(smaller, larger):
    assert peak(**smaller) < peak(**larger)


def test_estimates_are_sane_for_a_known_case():
    """200x200x100 int16 at 1x1x2 mm to 2 mm: 100x100x100 voxels; the phases follow the documented formulas."""
    plan = plan_case("ct.nii.gz", info(), spec(), budget=BIG, base=100, sw_batch_size=2)
    v_in, v_r = 200 * 200 * 100, 100**3
    assert plan.resampled == (100, 100, 100)
    assert plan.phases["load"] == v_in * (2 + 4)
    assert plan.phases["window"] == v_r * 4 + 4 * v_r * 4 + 2 * spec().window_activations(2)
    assert plan.peak == 100 + max(plan.phases.values())
    assert 1 << 20 < spec().window_activations(2) < 1 << 30


@pytest.mark.parametrize("name", BUNDLES)
def test_the_weight_count_from_the_task_matches_the_network(name):
    model = ModelSpec.from_task(load_task(REPO / "bundles" / name))
    task = json.loads((REPO / "bundles" / name / "configs" / "task.json").read_text())
    net = UNet(
        spatial_dims=task["spatial_dims"],
        in_channels=len(task["channels"]),
        out_channels=len(task["classes"]),
        features=task["network"]["features"],
        pool_sizes=task["network"].get("pool_sizes", 2),
    )
    real = sum(p.numel() for p in net.parameters())
    assert abs(model.weight_count() / real - 1) < 0.05
    assert ModelSpec.from_network(net, model.patch_size, model.pixdim) == dataclasses.replace(model, ensemble=1)


def test_a_tight_budget_lowers_the_window_batch_then_the_stitching_precision():
    model = spec(patch_size=(128, 128, 64))  # a window whose activations make the window phase the largest
    full = plan_case("ct.nii.gz", info(), model, budget=BIG, base=0, sw_batch_size=4)
    assert (full.sw_batch_size, full.stitch_bytes) == (4, 4)
    one = plan_case("ct.nii.gz", info(), model, budget=BIG, base=0, sw_batch_size=1)
    plan = plan_case("ct.nii.gz", info(), model, budget=one.peak, base=0, sw_batch_size=4)
    assert (plan.sw_batch_size, plan.stitch_bytes) == (1, 4) and plan.peak <= one.peak
    half = plan_case("ct.nii.gz", info(), model, budget=one.peak - 1, base=0, sw_batch_size=4)
    assert half.stitch_bytes == 2 and half.peak < one.peak


def test_the_sliding_windows_own_float32_limit_is_followed():
    plan = plan_case("ct.nii.gz", info(), spec(), budget=BIG, base=0, float32_stitch_limit=1 << 20)
    assert plan.stitch_bytes == 2


def test_nothing_fits_is_one_line_naming_the_file_the_need_and_the_budget():
    case = info((512, 512, 300), (1.0, 1.0, 1.0))
    with pytest.raises(MemoryPlanError) as error:
        plan_case(Path("/scans/ct.nii.gz"), case, spec(pixdim=(0.1, 0.1, 0.1)), budget=8 << 30, base=0)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("/scans/ct.nii.gz: needs about ")
    assert "5120x5120x3000" in message and "the budget of 8.0 GiB (--max-memory)" in message


def test_a_gpu_plan_counts_activations_against_the_device():
    plan = plan_case("ct.nii.gz", info(), spec(), budget=BIG, gpu_budget=BIG, base=0, device="cuda")
    assert plan.gpu == 4 * spec().window_activations(2) + spec().weight_bytes() // 2
    with pytest.raises(MemoryPlanError, match="of GPU memory"):
        plan_case("ct.nii.gz", info(), spec(), budget=BIG, gpu_budget=1 << 20, base=0, device="cuda")


def test_widths_whose_weights_exceed_the_budget_are_refused_before_any_network_is_built():
    wide = spec(features=(1024,) * 6, pool_sizes=((2, 2, 2),) * 5, ensemble=5)
    with pytest.raises(MemoryPlanError, match=r"bundles/wide: its network needs about .* for weights alone"):
        check_weights(wide, budget=4 << 30, source="bundles/wide")
    check_weights(spec(), budget=BIG)


def test_memory_sizes_parse_and_print():
    assert parse_bytes("8G") == parse_bytes("8GiB") == 8 << 30
    assert parse_bytes("512m") == 512 << 20 and parse_bytes("1000") == 1000
    for bad in ("", "lots", "-1G", "0"):
        with pytest.raises(ValueError, match="not a memory size"):
            parse_bytes(bad)
    assert format_bytes(1536 << 20) == "1.5 GiB" and format_bytes(100) == "100 B"


def test_the_window_activation_estimate_bounds_a_real_forward_pass():
    """The estimate is of the order of the tensors a forward pass of one window makes (sum of output sizes)."""
    model = spec(patch_size=(32, 32, 32))
    net = UNet(3, 1, 3, features=model.features).eval()
    sizes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * 4))
        for m in net.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        net(torch.zeros(1, 1, 32, 32, 32))
    for h in hooks:
        h.remove()
    estimate = model.window_activations(4)
    assert max(sizes) < estimate < sum(sizes)
