"""The whole-scan sliding window that ``unet-med predict`` and every bundle's ``inference.json`` run.

:class:`ScanInferer` is a MONAI ``Inferer``: a bundle config names it as its ``inferer`` and MONAI's
``SupervisedEvaluator`` calls it as ``inferer(inputs, network)``; :class:`~unet_med.inference.predictor.Predictor`
calls the same object. What it adds to MONAI's ``SlidingWindowInferer`` (Gaussian blending, overlap 0.5):

- On a CPU, the layers PyTorch runs slowly there are swapped for equivalents once per network
  (:func:`~unet_med.inference.fastpath.accelerate`), and freed buffers are kept during the window loop
  (:func:`~unet_med.inference.runtime.glibc_malloc_kept`).
- The network runs under ``torch.inference_mode`` and autocast (bf16 on a CPU with native bf16, fp16/bf16 on a
  GPU), channels-last unless it uses instance norm; optional mirroring TTA (then probabilities are blended).
- The stitching buffers are float32 while they fit ``stitch_budget_bytes``, else float16; on a GPU they stay on
  the GPU when they fit its free memory, else they go to the CPU.

The network is prepared (a copy accelerated, channels-last, mirrored) on first use and kept for later calls with
the same network object until its weights change (a checkpoint loaded into it, a training step); the network
given is never modified.

Example::

    inferer = ScanInferer(roi_size=(48, 48, 32), mirror=False)
    scores = inferer(volume[None], network)  # (1, num_classes, *spatial) float32 logits on the CPU
"""

from __future__ import annotations

import contextlib
import copy
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer

from unet_med.inference.fastpath import accelerate
from unet_med.inference.runtime import choose_precision, glibc_malloc_kept, uses_instance_norm
from unet_med.inference.tta import MirrorTTA

__all__ = ["ScanInferer"]


class ScanInferer(Inferer):
    """Sliding-window scores for whole scans, fast on CPUs and GPUs.

    Args:
        roi_size: window size (the bundle's ``patch_size``).
        overlap: window overlap (0.5 is nnU-Net's choice).
        sw_batch_size: windows per forward pass.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``
            (see :func:`~unet_med.inference.runtime.choose_precision`).
        mirror: mirroring TTA over ``mirror_axes`` (default all spatial axes): 2^d passes per window, and the
            output is then blended probabilities instead of logits.
        mirror_axes: spatial axes to mirror.
        fast_layers: on a CPU, swap in :mod:`unet_med.inference.fastpath` layers (same function, less time).
        channels_last: ``"auto"`` (on unless the network has instance norm), or a bool.
        compile: ``torch.compile`` the prepared network (slow first call).
        stitch_budget_bytes: largest float32 stitching buffer (classes x voxels x 4) before float16 is used.
        tune_malloc: keep freed buffers during the window loop (CPU only).
        progress: show MONAI's per-window progress bar.

    Returns (when called):
        ``(1, num_classes, *spatial)`` float32 scores on the stitching device (the CPU unless they fit the GPU).
    """

    def __init__(
        self,
        roi_size: Sequence[int],
        overlap: float = 0.5,
        sw_batch_size: int = 4,
        precision: str = "auto",
        mirror: bool = False,
        mirror_axes: Sequence[int] | None = None,
        fast_layers: bool = True,
        channels_last: bool | str = "auto",
        compile: bool = False,
        stitch_budget_bytes: int = 1 << 30,
        tune_malloc: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        self.roi_size = tuple(int(r) for r in roi_size)
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.precision = precision
        self.mirror = bool(mirror)
        self.mirror_axes = None if mirror_axes is None else tuple(int(a) for a in mirror_axes)
        self.fast_layers = fast_layers
        self.channels_last = channels_last
        self.compile = compile
        self.stitch_budget_bytes = stitch_budget_bytes
        self.tune_malloc = tune_malloc
        self.progress = progress
        self._prepared: weakref.WeakKeyDictionary[torch.nn.Module, tuple[Any, Callable, torch.memory_format]] = (
            weakref.WeakKeyDictionary()
        )

    def prepare(self, network: torch.nn.Module, device: torch.device) -> tuple[Callable, torch.memory_format]:
        """The network as the windows run it (and its memory format); made once per network and weights."""
        state = (device, tuple(p._version for p in network.parameters()), tuple(b._version for b in network.buffers()))
        cached = self._prepared.get(network)
        if cached is not None and cached[0] == state:
            return cached[1], cached[2]
        dims = len(self.roi_size)
        net = copy.deepcopy(network).to(device).eval()
        if self.fast_layers and device.type == "cpu":
            net = accelerate(net)
        memory_format = torch.contiguous_format
        channels_last = not uses_instance_norm(net) if self.channels_last == "auto" else bool(self.channels_last)
        if channels_last:
            memory_format = torch.channels_last_3d if dims == 3 else torch.channels_last
            net = net.to(memory_format=memory_format)  # type: ignore[call-overload]
        run: Any = MirrorTTA(net, axes=self.mirror_axes, spatial_dims=dims) if self.mirror else net
        if self.compile:
            run = torch.compile(run)
        self._prepared[network] = (state, run, memory_format)
        return run, memory_format

    def _stitching(self, inputs: torch.Tensor, num_classes: int, device: torch.device) -> tuple[torch.device, Any]:
        voxels = math.prod(int(s) for s in inputs.shape[2:])
        dtype = torch.float32 if num_classes * voxels * 4 <= self.stitch_budget_bytes else torch.float16
        if device.type != "cuda":
            return torch.device("cpu"), dtype
        free, _ = torch.cuda.mem_get_info(device)
        if (num_classes + 1) * voxels * 4 + inputs.numel() * 4 < 0.5 * free:  # buffers, input, room for windows
            return device, torch.float32
        return torch.device("cpu"), dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Scores of ``inputs`` ``(1, C_in, *spatial)`` (one case; the evaluator's batch of 1)."""
        if inputs.ndim != len(self.roi_size) + 2:
            raise ValueError(
                f"input of shape {tuple(inputs.shape)} does not match a {len(self.roi_size)}D window {self.roi_size}"
            )
        if isinstance(network, torch.nn.Module) and any(True for _ in network.parameters()):
            device = next(network.parameters()).device
            run, memory_format = self.prepare(network, device)
            num_classes = int(getattr(network, "out_channels", 0)) or 1
        elif callable(network):  # a wrapped or scripted model (MONAI Deploy's TorchScriptModel): run it as it is
            device, run, memory_format, num_classes = inputs.device, network, torch.contiguous_format, 1
        else:
            raise TypeError(f"network must be a torch.nn.Module or callable, got {type(network).__name__}")
        stitch_device, stitch_dtype = self._stitching(inputs, num_classes, device)
        dtype = choose_precision(self.precision, device)
        inferer = SlidingWindowInferer(
            roi_size=self.roi_size,
            sw_batch_size=self.sw_batch_size,
            overlap=self.overlap,
            mode="gaussian",
            sw_device=device,
            device=stitch_device,
            progress=self.progress,
        )

        def forward(window: torch.Tensor) -> torch.Tensor:
            window = window.to(device=device, dtype=torch.float32).contiguous(memory_format=memory_format)
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                out = run(window)
            out = out.to(dtype=stitch_dtype).contiguous()
            return out.clone() if out.is_inference() else out  # MONAI weights the window in place

        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        x = x.to(dtype=stitch_dtype)  # MONAI's stitching buffers take the input's dtype
        tune = self.tune_malloc and device.type == "cpu"
        with glibc_malloc_kept() if tune else contextlib.nullcontext(), torch.no_grad():
            scores = inferer(x, forward)  # no_grad, not inference_mode: the buffers stay normal tensors
        if not isinstance(scores, torch.Tensor):
            raise RuntimeError(f"the network returned {type(scores).__name__}, expected one tensor")
        return scores
