"""How much memory a prediction will take, estimated from the scan's header and the bundle before anything large
is allocated; what to choose so it fits a budget; a one-line refusal when nothing does.

A case goes through four phases, each with its own peak (bytes; ``V_in`` the scan's voxels, ``C`` its channels,
``V_r`` the voxels after resampling to the bundle's spacing, ``K`` the classes, ``s`` the stitching precision's
bytes, ``a`` the network's compute precision's bytes, ``b`` the window batch):

- **load**: the voxels as stored and their float32 copy, ``V_in C (raw + 4)``;
- **resample**: the float32 input, the resampled image (with MONAI's copy and sampling grid),
  ``V_in C 4 + V_r (3 C + d) 4``;
- **window**: the resampled image, the stitching buffers (one per class plus MONAI's weight map) and the network's
  activations for one batch of windows, ``V_r C 4 + (K + 1) V_r s + b A``, where ``A``, one window's activation
  peak, is the U-Net's skip tensors (kept until the decoder needs them) plus the top level's working tensors:
  ``W (a sum_l f_l / r_l + f_0 (3 a + 8) + 12 K)`` for a window of ``W`` voxels, widths ``f_l`` and pooling
  factors ``r_l``;
- **write**: the scores, the label map with its connected components, and the mask back on the input's grid,
  ``K V_r s + 9 V_r + 8 V_in``, plus MONAI's float64 sampling grid ``(8 d + 8) V_in`` for a resampled scan of at
  most :data:`~unet_med.inference.postprocess.INVERT_VOXEL_LIMIT` voxels (larger ones go back slab by slab).

The peak is the process's memory when planning (:func:`current_rss`: the interpreter, torch, the loaded weights)
plus the largest phase. On a GPU the activations and a copy of the weights count against the device's memory.
:func:`plan_case` lowers the window batch, then stitches in float16, until the peak fits the budget (default
:func:`default_budget`: 80% of the memory available when the run starts); when nothing fits it raises
:class:`MemoryPlanError` naming the file, what it needs and the budget. docs/memory.md has the measured figures.

Example::

    spec = ModelSpec.from_task(load_task("bundles/sarcoma_ct"))
    plan = plan_case("ct.nii.gz", read_header("ct.nii.gz"), spec, budget=8 << 30)
    plan.sw_batch_size, plan.stitch_bytes, plan.peak  # 4, 4, 1_900_000_000
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Sequence
from typing import Any

from unet_med.data.readers import ImageInfo
from unet_med.inference.postprocess import INVERT_VOXEL_LIMIT

__all__ = [
    "MemoryPlan",
    "MemoryPlanError",
    "ModelSpec",
    "check_weights",
    "current_rss",
    "default_budget",
    "format_bytes",
    "parse_bytes",
    "plan_bundle_cases",
    "plan_case",
    "resampled_shape",
]

#: Fraction of the memory available at the start that a run may plan to use (the rest: other processes, slack).
BUDGET_FRACTION = 0.8


class MemoryPlanError(ValueError):
    """A case (or a bundle) that needs more memory than the budget, whatever the planner chooses."""


def format_bytes(n: float) -> str:
    """``1536 << 20`` -> ``"1.5 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"2000000000"`` -> bytes (binary units).

    Raises:
        ValueError: not a size.
    """
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    body = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (body[:-1], body[-1]) if body and body[-1] in units else (body, "")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (e.g. 8G, 512M)") from None
    if not value > 0:
        raise ValueError(f"not a memory size: {text!r} (must be > 0)")
    return int(value)


def current_rss() -> int:
    """This process's resident memory now (bytes; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def default_budget(device: Any = "cpu") -> tuple[int, int | None]:
    """``(host budget, GPU budget or None)``: 80% of the available host memory plus what this process already
    holds; on a CUDA device also 90% of the device's free memory."""
    host = int(BUDGET_FRACTION * _available_memory()) + current_rss()
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return host, int(0.9 * free)
    return host, None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the plan needs from a bundle: sizes, not weights.

    Attributes:
        spatial_dims: 2 or 3.
        in_channels, num_classes: the network's input channels and output classes.
        features: the U-Net's widths, shallow to deep.
        pool_sizes: pooling per level (``len(features) - 1`` entries), default 2 on every axis.
        patch_size: the window.
        pixdim: target spacing, or ``None`` (the scan's own).
        ensemble: networks run per window.
    """

    spatial_dims: int
    in_channels: int
    num_classes: int
    features: tuple[int, ...]
    pool_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]
    pixdim: tuple[float, ...] | None
    ensemble: int = 1

    @classmethod
    def from_network(cls, network: Any, patch_size: Sequence[int], pixdim: Sequence[float] | None) -> ModelSpec | None:
        """From a built network (a :class:`~unet_med.networks.UNet` or a fold ensemble of them); ``None`` for a
        network whose sizes are unknown (a bundle run with ``--trust-bundle-code``)."""
        members = list(getattr(network, "networks", [network]))
        first = members[0]
        if not all(hasattr(first, a) for a in ("features", "pool_sizes", "in_channels", "out_channels")):
            return None
        return cls(
            spatial_dims=len(patch_size),
            in_channels=int(first.in_channels),
            num_classes=int(first.out_channels),
            features=tuple(int(f) for f in first.features),
            pool_sizes=tuple(tuple(int(p) for p in pool) for pool in first.pool_sizes),
            patch_size=tuple(int(p) for p in patch_size),
            pixdim=None if pixdim is None else tuple(float(p) for p in pixdim),
            ensemble=len(members),
        )

    @classmethod
    def from_task(cls, task: dict[str, Any]) -> ModelSpec:
        """From a (validated) task description, before any network is built."""
        dims, features = int(task["spatial_dims"]), tuple(int(f) for f in task["network"]["features"])
        pools = task["network"].get("pool_sizes") or [[2] * dims] * (len(features) - 1)
        pixdim = task.get("preprocessing", {}).get("pixdim")
        return cls(
            spatial_dims=dims,
            in_channels=len(task["channels"]),
            num_classes=len(task["classes"]),
            features=features,
            pool_sizes=tuple(tuple(int(p) for p in pool) for pool in pools),
            patch_size=tuple(int(p) for p in task["patch_size"]),
            pixdim=None if pixdim is None else tuple(float(p) for p in pixdim),
            ensemble=int(task.get("inference", {}).get("ensemble", 1)),
        )

    def weight_count(self) -> int:
        """Parameters of one network: two 3^d convolutions per level and per decoder stage, the up-convolutions."""
        k, f = 3**self.spatial_dims, self.features
        widths = (self.in_channels, *f)
        encoder = sum(k * (c_in * c + c * c) for c_in, c in itertools.pairwise(widths))
        decoder = sum(
            k * (2 * f[i] * f[i] + f[i] * f[i]) + 2**self.spatial_dims * f[i + 1] * f[i] for i in range(len(f) - 1)
        )
        return encoder + decoder + f[0] * self.num_classes

    def weight_bytes(self) -> int:
        """float32 weights of every member, twice (the loaded networks and the copy the sliding window runs)."""
        return 2 * 4 * self.weight_count() * self.ensemble

    def window_activations(self, compute_bytes: int) -> int:
        """One window's activation peak in bytes (see the module docstring)."""
        voxels = math.prod(self.patch_size)
        factor, skips = 1, 0.0
        for level, width in enumerate(self.features):
            skips += width / factor
            if level < len(self.pool_sizes):
                factor *= math.prod(self.pool_sizes[level])
        top = self.features[0] * (3 * compute_bytes + 8) + 12 * self.num_classes * (2 if self.ensemble > 1 else 1)
        return int(voxels * (compute_bytes * skips + top))


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """A case's estimate and the choices that fit it to the budget.

    Attributes:
        path: the case.
        shape, channels: the scan's size from its header.
        resampled: the size after resampling to the bundle's spacing.
        phases: bytes per phase (``load``, ``resample``, ``window``, ``write``), on top of ``base``.
        base: the process's memory when planning (interpreter, libraries, weights).
        gpu: bytes on the GPU (weights and activations), or ``None`` on a CPU.
        sw_batch_size: windows per forward pass chosen.
        stitch_bytes: 4 (float32) or 2 (float16) stitching buffers.
        budget, gpu_budget: what the plan had to fit.
    """

    path: str
    shape: tuple[int, ...]
    channels: int
    resampled: tuple[int, ...]
    phases: dict[str, int]
    base: int
    gpu: int | None
    sw_batch_size: int
    stitch_bytes: int
    budget: int
    gpu_budget: int | None = None

    @property
    def peak(self) -> int:
        """Estimated peak resident memory of the process while it predicts this case."""
        return self.base + max(self.phases.values())

    @property
    def fits(self) -> bool:
        host = self.peak <= self.budget
        return host and (self.gpu is None or self.gpu_budget is None or self.gpu <= self.gpu_budget)

    def describe(self) -> str:
        """One line: sizes, the estimate per phase, the choices, the budget."""
        size = "x".join(map(str, self.shape)) + (f"x{self.channels}ch" if self.channels > 1 else "")
        phases = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.phases.items())
        gpu = f"; GPU {format_bytes(self.gpu)} of {format_bytes(self.gpu_budget or 0)}" if self.gpu is not None else ""
        return (
            f"{size} -> {'x'.join(map(str, self.resampled))}: peak ~{format_bytes(self.peak)} of "
            f"{format_bytes(self.budget)} (base {format_bytes(self.base)}; {phases}){gpu}; "
            f"sw_batch_size {self.sw_batch_size}, stitching {'float32' if self.stitch_bytes == 4 else 'float16'}"
        )

    def refusal(self) -> str:
        """The one-line error when the plan does not fit."""
        biggest = max(self.phases, key=lambda k: self.phases[k])
        if self.gpu is not None and self.gpu_budget is not None and self.gpu > self.gpu_budget:
            needs, budget = f"{format_bytes(self.gpu)} of GPU memory", f"{format_bytes(self.gpu_budget)} free"
        else:
            needs, budget = f"about {format_bytes(self.peak)}", f"the budget of {format_bytes(self.budget)}"
        return (
            f"{self.path}: needs {needs} ({'x'.join(map(str, self.shape))} resampled to "
            f"{'x'.join(map(str, self.resampled))}, largest phase: {biggest}) even with sw_batch_size 1 and float16 "
            f"stitching; more than {budget} (--max-memory)"
        )


def resampled_shape(info: ImageInfo, pixdim: Sequence[float] | None) -> tuple[int, ...]:
    """The scan's shape at the bundle's spacing (axes in the file's order; orientation does not change the count)."""
    if pixdim is None:
        return tuple(info.shape)
    spacing = list(info.spacing) + [1.0] * (len(pixdim) - len(info.spacing))
    return tuple(max(1, round(n * s / p)) for n, s, p in zip(info.shape, spacing, pixdim, strict=False))


def _estimate(
    path: str,
    info: ImageInfo,
    spec: ModelSpec,
    sw_batch_size: int,
    stitch_bytes: int,
    compute_bytes: int,
    base: int,
    on_gpu: bool,
    budgets: tuple[int, int | None],
) -> MemoryPlan:
    v_in = math.prod(info.shape)
    channels = max(info.channels, 1)
    resampled = resampled_shape(info, spec.pixdim)
    v_r = math.prod(resampled)
    if spec.pixdim is None:
        resampled, v_r = tuple(info.shape), v_in
    dims, classes = spec.spatial_dims, spec.num_classes
    activations = sw_batch_size * spec.window_activations(compute_bytes)
    raw = info.dtype.itemsize if info.dtype.kind in "iufb" else 4
    invertd = spec.pixdim is not None and v_in <= INVERT_VOXEL_LIMIT  # MONAI's Invertd: a float64 sampling grid
    phases = {
        "load": v_in * channels * (raw + 4),
        "resample": v_in * channels * 4 + v_r * (3 * channels + dims) * 4 if spec.pixdim is not None else 0,
        "window": v_r * channels * 4 + (classes + 1) * v_r * stitch_bytes + (0 if on_gpu else activations),
        "write": classes * v_r * stitch_bytes + 9 * v_r + 8 * v_in + (v_in * (8 * dims + 8) if invertd else 0),
    }
    gpu = activations + spec.weight_bytes() // 2 if on_gpu else None
    return MemoryPlan(
        path, tuple(info.shape), channels, resampled, phases, base, gpu, sw_batch_size, stitch_bytes, *budgets
    )


def plan_case(
    path: str | os.PathLike,
    info: ImageInfo,
    spec: ModelSpec,
    budget: int | None = None,
    gpu_budget: int | None = None,
    sw_batch_size: int = 4,
    compute_bytes: int = 2,
    device: Any = "cpu",
    base: int | None = None,
    float32_stitch_limit: int | None = None,
) -> MemoryPlan:
    """Estimates a case's peak memory and picks the largest window batch up to ``sw_batch_size`` (float32
    stitching first, then float16) that fits ``budget`` (and ``gpu_budget`` on a GPU).

    Args:
        path: the case (named in the plan and the refusal).
        info: its header (:func:`~unet_med.inference.cases.case_header`).
        spec: the bundle's sizes.
        budget: host bytes; ``None``: :func:`default_budget`.
        gpu_budget: device bytes on a GPU; ``None`` with ``budget`` ``None``: the device's free memory.
        sw_batch_size: the most windows per forward pass.
        compute_bytes: bytes per activation (2 under bf16/fp16 autocast, 4 in fp32).
        device: ``"cpu"`` or a CUDA device.
        base: the process's memory already in use; ``None``: :func:`current_rss`.
        float32_stitch_limit: the sliding window's own limit on a float32 stitching buffer
            (:class:`~unet_med.inference.inferer.ScanInferer`'s ``stitch_budget_bytes``): beyond it, float16.

    Raises:
        MemoryPlanError: even one window at a time with float16 stitching does not fit.
    """
    on_gpu = str(device).startswith("cuda")
    if budget is None:
        budget, default_gpu = default_budget(device)
        gpu_budget = default_gpu if gpu_budget is None else gpu_budget
    base = current_rss() if base is None else base
    voxels = spec.num_classes * math.prod(resampled_shape(info, spec.pixdim))
    stitches = (4, 2) if float32_stitch_limit is None or voxels * 4 <= float32_stitch_limit else (2,)
    choices = [(batch, stitch) for stitch in stitches for batch in range(max(1, sw_batch_size), 0, -1)]
    for batch, stitch in choices:
        plan = _estimate(str(path), info, spec, batch, stitch, compute_bytes, base, on_gpu, (budget, gpu_budget))
        if plan.fits:
            return plan
    raise MemoryPlanError(plan.refusal())


def check_weights(spec: ModelSpec, budget: int, source: str = "bundle") -> None:
    """Refuses a bundle whose networks alone (float32 weights, twice) need more than ``budget``, before they are
    built.

    Raises:
        MemoryPlanError: one line naming the bundle, the weights' size and the budget.
    """
    held = current_rss()
    if held + spec.weight_bytes() > budget:
        widths = ",".join(map(str, spec.features))
        raise MemoryPlanError(
            f"{source}: its network needs about {format_bytes(spec.weight_bytes())} for weights alone (widths "
            f"{widths}, {spec.ensemble} member(s)) on top of the {format_bytes(held)} this process holds, more than "
            f"the budget of {format_bytes(budget)} (--max-memory)"
        )


def plan_bundle_cases(
    bundle_dir: str | os.PathLike,
    cases: Sequence[str | os.PathLike],
    budget: int | None = None,
    sw_batch_size: int = 4,
) -> list[MemoryPlan]:
    """For callers that run a bundle's own workflow (``bundle run``, ``verify``'s end-to-end check), whose choices
    the plan cannot change: checks the weights, then each case's header and plan, from the bundle's task.

    Returns:
        The plans (``[]`` for a bundle without a task description: one run with ``--trust-bundle-code``).

    Raises:
        MemoryPlanError: the weights or a case do not fit ``budget`` (default :func:`default_budget`).
        ImageReadError: a header that is unreadable, too large or lies.
    """
    from pathlib import Path

    from unet_med.bundle.task import TASK_FILE, load_task
    from unet_med.inference.cases import case_header

    root = Path(bundle_dir)
    if not (root / TASK_FILE).is_file():
        return []
    spec = ModelSpec.from_task(load_task(root))
    budget = budget or default_budget()[0]
    check_weights(spec, budget, source=str(root))
    base = current_rss() + spec.weight_bytes()
    return [plan_case(c, case_header(c), spec, budget, base=base, sw_batch_size=sw_batch_size) for c in cases]
