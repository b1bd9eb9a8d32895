"""Processor-aware settings for fast inference: precision, threads, memory format and the allocator.

- :func:`cpu_supports_bf16`: true only where bfloat16 runs natively (AVX-512 BF16 or AMX); elsewhere oneDNN
  emulates it and it is slower than float32.
- :func:`choose_precision`: ``"auto"`` becomes bf16 on such a CPU, fp16 on a CUDA GPU (bf16 where the GPU has it),
  float32 otherwise.
- :func:`glibc_malloc_kept`: stops glibc from returning every large activation buffer to the kernel (and
  page-faulting it back on the next window) during the sliding window, which makes a CPU forward pass faster;
  :func:`glibc_malloc_mapped` and :func:`glibc_malloc_default` relax it inside such a block (for reading a case,
  and for a large case).
- :func:`uses_instance_norm`: channels-last pays for convolutions but not around instance norm, which converts the
  layout twice per layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from collections.abc import Iterator

import torch

__all__ = [
    "choose_precision",
    "cpu_flags",
    "cpu_supports_bf16",
    "default_num_threads",
    "glibc_malloc_default",
    "glibc_malloc_kept",
    "glibc_malloc_mapped",
    "uses_instance_norm",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bf16() -> bool:
    """True when oneDNN is available and the CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16``)."""
    if not torch.backends.mkldnn.is_available():
        return False
    flags = cpu_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return sys.platform == "darwin" and os.uname().machine == "arm64"  # Apple silicon has bf16 instructions


def choose_precision(precision: str, device: torch.device) -> torch.dtype:
    """Resolves ``"auto"``/``"fp32"``/``"bf16"``/``"fp16"`` for ``device`` to the network's compute dtype.

    Raises:
        ValueError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return _DTYPES[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32


def default_num_threads() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc only: musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


_kept_depth = 0  # how many glibc_malloc_kept blocks are open (malloc settings are process-wide)


def _keep(libc: ctypes.CDLL) -> None:
    libc.mallopt(_M_MMAP_MAX, 0)  # large buffers from the heap, not from mmap
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # and the heap never shrinks on free()


def _defaults(libc: ctypes.CDLL) -> None:
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)


@contextlib.contextmanager
def glibc_malloc_kept(release: bool = True) -> Iterator[bool]:
    """Inside the block, glibc keeps freed large buffers instead of unmapping them; on exit it gives them back.

    The same as ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`` but for one block, set
    with ``mallopt``: the network's activation buffers are reused from one window to the next instead of being
    page-faulted in again (a CPU forward pass 1.3-1.8x faster). Outside the block the defaults return, and
    ``malloc_trim`` hands the kept memory back (~0.14 s after a batch of four 96^3 windows), so reading and
    resampling a large scan do not pile up freed buffers. A no-op (yielding False) where the C library is not
    glibc.

    Blocks nest: an inner block is part of the outermost one, which alone restores the defaults. ``unet-med
    predict`` opens one block around all its cases (every case then reuses the buffers of the one before, and the
    peak stays that of the largest case) with ``release=False``: the process ends right after, so handing the
    memory back would only cost time.
    """
    global _kept_depth
    libc = _libc()
    if libc is None:
        yield False
        return
    if _kept_depth == 0:
        _keep(libc)
    _kept_depth += 1
    try:
        yield True
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            _defaults(libc)
            if release:
                libc.malloc_trim(0)


@contextlib.contextmanager
def glibc_malloc_mapped() -> Iterator[None]:
    """Inside a :func:`glibc_malloc_kept` block: large allocations are mapped (and unmapped when freed) again,
    while the buffers already kept stay kept. For reading a case, whose size is not known before it is read.
    Elsewhere a no-op.
    """
    libc = _libc()
    if libc is None or _kept_depth == 0:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, 0)


@contextlib.contextmanager
def glibc_malloc_default() -> Iterator[None]:
    """Inside a :func:`glibc_malloc_kept` block: glibc's defaults for this block, the kept buffers handed back
    first, and the kept mode again after it. Elsewhere a no-op.

    A ``glibc_malloc_kept`` block opened inside this one acts as an outermost block (and gives its buffers back
    when it ends).
    """
    global _kept_depth
    libc = _libc()
    if libc is None or _kept_depth == 0:
        yield
        return
    depth, _kept_depth = _kept_depth, 0
    _defaults(libc)
    libc.malloc_trim(0)
    try:
        yield
    finally:
        _kept_depth = depth
        _keep(libc)


def uses_instance_norm(network: torch.nn.Module) -> bool:
    """True when ``network`` has an instance-norm layer (channels-last then costs more than it gains)."""
    from unet_med.inference.fastpath import InstanceNormNd

    norms = (torch.nn.modules.instancenorm._InstanceNorm, InstanceNormNd)
    return any(isinstance(m, norms) for m in network.modules())
