"""Speed of the 3D ``unet_med`` UNet against MONAI's ``BasicUNet`` at matching widths, on CPU.

The two networks are built to be the same function: ``BasicUNet(3, 1, 2, features=(32, 32, 64, 128, 256, 32))``
with its defaults (instance norm with affine, LeakyReLU 0.1, deconv upsampling) and
``UNet(3, 1, 2, features=(32, 32, 64, 128, 256), norm=["instance", {"affine": true}],
act=["leakyrelu", {"negative_slope": 0.1, "inplace": true}])``. BasicUNet's sixth width (32, after the last
upsampling) is what ``UNet`` does anyway (the last decoder block has ``features[0]`` channels). The script copies
BasicUNet's weights into ours and checks that the outputs agree before timing anything, so any difference in
time is implementation overhead or noise, not a different amount of work.

Measured per net: parameters, forward FLOPs (``torch.utils.flop_counter.FlopCounterMode``: convolutions,
transposed convolutions and matmuls, 2 FLOPs per multiply-add; normalisation and activations are not counted),
forward time (batch 1, eval, ``torch.inference_mode``) and training-step time (batch 2: forward, ``DiceCELoss``,
backward, ``Adam`` step), each in fp32 and in bf16 autocast; ours also in ``channels_last_3d``.

Every timing round runs all configurations once, after one warm-up call each, alternating the order
(A B C, C B A, A B C, ...); the table gives medians over rounds, and ratios are medians of the per-round ratios, so a
neighbour's load that slows one round slows both sides of the ratio.

Set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python when anything else runs on the machine: with OpenMP's
default spin-wait a busy neighbour makes 2-thread torch several times slower.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_network.py               # 64^3, ~4 min on 2 cores
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_network.py --patch 96 --json bench.json
    python benchmarks/bench_network.py --quick                               # smoke run, seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import monai
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unet_med.networks import UNet

__all__ = ["main"]

logger = logging.getLogger("bench_network")

BASIC_FEATURES = (32, 32, 64, 128, 256, 32)
OURS_FEATURES = (32, 32, 64, 128, 256)
NORM = ("instance", {"affine": True})  # BasicUNet's default
ACT = ("leakyrelu", {"negative_slope": 0.1, "inplace": True})  # BasicUNet's default
PRECISIONS = ("fp32", "bf16")
TRAIN_BATCH = 2
FORWARD_ROUNDS_PER_REPEAT = 3  # a forward pass is ~10x cheaper than a training step: more rounds, same cost


def _basic_key_to_ours(key: str) -> str:
    """Maps a BasicUNet state-dict key to the matching ``UNet`` key."""
    key = re.sub(r"^conv_0\.", "encoder.0.", key)
    for i in (1, 2, 3):
        key = re.sub(rf"^down_{i}\.convs\.", f"encoder.{i}.", key)
    key = re.sub(r"^down_4\.convs\.", "bridge.", key)
    for j, i in enumerate((4, 3, 2, 1)):  # upcat_4 is the deepest, like decoder.0
        key = re.sub(rf"^upcat_{i}\.upsample\.deconv\.", f"upsample.{j}.", key)
        key = re.sub(rf"^upcat_{i}\.convs\.", f"decoder.{j}.", key)
    key = re.sub(r"^final_conv\.", "head.", key)
    return re.sub(r"\.conv_(\d)\.", r".\1.", key)


def build_nets() -> dict[str, nn.Module]:
    """Returns ``{"basic": BasicUNet, "ours": UNet, "ours_cl": UNet in channels_last_3d}`` with equal weights."""
    torch.manual_seed(0)
    basic = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=BASIC_FEATURES)
    ours = UNet(3, 1, 2, features=OURS_FEATURES, norm=NORM, act=ACT)
    ours.load_state_dict({_basic_key_to_ours(k): v for k, v in basic.state_dict().items()}, strict=True)
    ours_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last_3d)
    return {"basic": basic, "ours": ours, "ours_cl": ours_cl}


def _layout(name: str) -> torch.memory_format:
    return torch.channels_last_3d if name.endswith("_cl") else torch.contiguous_format


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def count_gflop(fn: Callable[[], object]) -> float:
    """GFLOP counted by ``FlopCounterMode`` while ``fn`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def make_forward(net: nn.Module, x: torch.Tensor, precision: str) -> Callable[[], object]:
    """One inference forward pass (eval mode, ``inference_mode``)."""

    def forward() -> None:
        net.eval()
        with torch.inference_mode(), _autocast(precision):
            net(x)

    return forward


def make_train_step(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, optimizer: torch.optim.Optimizer
) -> Callable[[], object]:
    """One training step: forward and DiceCE loss (under autocast for bf16), backward, Adam step."""
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    def step() -> None:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        with _autocast(precision):
            loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    return step


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Times every case once per round after one warm-up call each; odd rounds run the cases in reverse order
    (A B C, C B A, A B C, ...) so that no case always follows the same neighbour."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(_timed(cases[name]))
        logger.info("round %d/%d: %s", r + 1, repeats, ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
    return times


def _ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def run(patch: int, repeats: int, threads: int) -> dict:
    """Runs the whole comparison and returns the results as a JSON-safe dict."""
    torch.set_num_threads(threads)
    nets = build_nets()
    shape = (patch, patch, patch)
    torch.manual_seed(1)
    x1 = torch.randn(1, 1, *shape)
    x2 = torch.randn(TRAIN_BATCH, 1, *shape)
    y2 = torch.randint(0, 2, (TRAIN_BATCH, 1, *shape))

    with torch.inference_mode():
        nets["basic"].eval()
        nets["ours"].eval()
        max_abs_diff = (nets["basic"](x1) - nets["ours"](x1)).abs().max().item()
    if max_abs_diff > 1e-4:
        raise RuntimeError(f"BasicUNet and UNet disagree after copying weights (max |diff| {max_abs_diff:g}).")

    params = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    forward_gflop = {name: count_gflop(make_forward(net, x1, "fp32")) for name, net in nets.items()}

    def grad_pass(net: nn.Module) -> Callable[[], None]:
        def fn() -> None:
            net.train()
            DiceCELoss(to_onehot_y=True, softmax=True)(net(x2), y2).backward()
            net.zero_grad(set_to_none=True)

        return fn

    train_gflop = {name: count_gflop(grad_pass(net)) for name, net in nets.items()}

    forward_cases, train_cases = {}, {}
    for precision in PRECISIONS:
        for name, net in nets.items():
            fmt = _layout(name)
            forward_cases[f"{name}/{precision}"] = make_forward(net, x1.contiguous(memory_format=fmt), precision)
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=1e-4) for name, net in nets.items()}
    for precision in PRECISIONS:
        for name, net in nets.items():
            fmt = _layout(name)
            train_cases[f"{name}/{precision}"] = make_train_step(
                net, x2.contiguous(memory_format=fmt), y2.contiguous(memory_format=fmt), precision, optimizers[name]
            )

    load_before = os.getloadavg()
    logger.info("forward, %d rounds", FORWARD_ROUNDS_PER_REPEAT * repeats)
    forward_times = interleaved(forward_cases, FORWARD_ROUNDS_PER_REPEAT * repeats)
    logger.info("training step, %d rounds", repeats)
    train_times = interleaved(train_cases, repeats)
    load_after = os.getloadavg()

    rows = []
    for precision in PRECISIONS:
        for name in nets:
            key = f"{name}/{precision}"
            ref = f"basic/{precision}"
            fwd_s = statistics.median(forward_times[key])
            train_s = statistics.median(train_times[key])
            rows.append(
                {
                    "net": name,
                    "precision": precision,
                    "forward_s": fwd_s,
                    "forward_gflops": forward_gflop[name] / fwd_s,
                    "forward_ratio_basic_over_this": _ratio(forward_times, ref, key),
                    "train_step_s": train_s,
                    "train_gflops": train_gflop[name] / train_s,
                    "train_ratio_basic_over_this": _ratio(train_times, ref, key),
                }
            )

    return {
        "config": {
            "patch": patch,
            "forward_rounds": FORWARD_ROUNDS_PER_REPEAT * repeats,
            "train_rounds": repeats,
            "threads": threads,
            "train_batch": TRAIN_BATCH,
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES"),
            "loadavg_before_timing": load_before,
            "loadavg_after_timing": load_after,
        },
        "max_abs_diff_basic_vs_ours": max_abs_diff,
        "params": params,
        "forward_gflop_batch1": forward_gflop,
        "train_gflop_batch2_fwd_bwd": train_gflop,
        "rows": rows,
        "samples": {"forward_s": forward_times, "train_step_s": train_times},
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


LABELS = {"basic": "MONAI BasicUNet", "ours": "unet_med UNet", "ours_cl": "unet_med UNet, channels_last_3d"}


def markdown(results: dict) -> str:
    """The results as two Markdown tables: the nets, then the timings."""
    cfg = results["config"]
    lines = [
        f"Patch {cfg['patch']}^3, forward batch 1, training step batch {cfg['train_batch']}, "
        f"{cfg['threads']} threads, medians of {cfg['forward_rounds']} (forward) and {cfg['train_rounds']} (training) "
        "interleaved rounds. "
        f"Outputs with equal weights: max |diff| {results['max_abs_diff_basic_vs_ours']:.1e}.",
        "",
        "| net | parameters | GFLOP per forward (batch 1) | GFLOP per forward+backward (batch 2) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("basic", "ours"):
        lines.append(
            f"| {LABELS[name]} | {results['params'][name]:,} | {results['forward_gflop_batch1'][name]:.1f} "
            f"| {results['train_gflop_batch2_fwd_bwd'][name]:.1f} |"
        )
    lines += [
        "",
        "| net | precision | forward s | forward GFLOP/s | BasicUNet/this (forward) "
        "| train step s | train GFLOP/s | BasicUNet/this (train) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {LABELS[row['net']]} | {row['precision']} | {row['forward_s']:.3f} | {row['forward_gflops']:.0f} "
            f"| {row['forward_ratio_basic_over_this']:.2f} | {row['train_step_s']:.3f} | {row['train_gflops']:.0f} "
            f"| {row['train_ratio_basic_over_this']:.2f} |"
        )
    return "\n".join(lines)


def profile_ours(patch: int, threads: int, rows: int = 10) -> str:
    """Top operators by self CPU time in one fp32 forward and one fp32 training step of ``unet_med.UNet``."""
    from torch.profiler import profile

    torch.set_num_threads(threads)
    net = build_nets()["ours"]
    shape = (patch, patch, patch)
    x1, x2 = torch.randn(1, 1, *shape), torch.randn(TRAIN_BATCH, 1, *shape)
    y2 = torch.randint(0, 2, (TRAIN_BATCH, 1, *shape))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    out = []
    for label, fn in (
        ("forward, batch 1", make_forward(net, x1, "fp32")),
        (f"training step, batch {TRAIN_BATCH}", make_train_step(net, x2, y2, "fp32", optimizer)),
    ):
        fn()
        with profile() as prof:
            fn()
        out.append(f"unet_med UNet, fp32 {label}, patch {patch}^3:")
        out.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch", type=int, default=64, help="cubic patch edge, a multiple of 16 (default 64)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="interleaved rounds of training steps (default 5); forward runs 3x as many",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--json", metavar="OUT", help="also write the results, with every sample, to OUT")
    parser.add_argument("--quick", action="store_true", help="smoke run: patch 32, 2 rounds")
    parser.add_argument("--profile", action="store_true", help="also print the top operators of our fp32 net")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every round's times")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.quick:
        args.patch, args.repeats = 32, 2
    if args.patch < 16 or args.patch % 16:
        parser.error(f"--patch must be a positive multiple of 16 (4 poolings), got {args.patch}")
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        logger.warning("OMP_WAIT_POLICY is not PASSIVE: timings suffer badly if anything else uses the cores.")

    results = run(args.patch, args.repeats, args.threads)
    env = results["environment"]
    print(
        f"torch {env['torch']}, monai {env['monai']}, {env['cpu']} ({env['cpu_count']} CPUs), "
        f"load average {env['loadavg_before_timing'][0]:.2f} -> {env['loadavg_after_timing'][0]:.2f}"
    )
    print(markdown(results))
    if args.profile:
        print()
        print(profile_ours(args.patch, args.threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
