"""Inference-only replacements for layers that PyTorch's CPU kernels run far slower than they need to.

Measured on one 96^3 window of a 32-channel bf16 feature map (1 thread, this project's Zen 5 machine):

- :class:`PairwiseMaxPool`: ``max_pool3d`` on a contiguous bf16 tensor took ~100 ms; the same 2x2x2 pooling as
  three element-wise maxima of strided views took ~11 ms.
- :class:`PointwiseConv`: a 1x1x1 convolution (the U-Net's head) through oneDNN took ~35 ms; the same as one
  matrix multiply took ~5 ms.
- :class:`StridedTransposedConv`: a 2x2x2 transposed convolution with stride 2 (the decoder's up-sampling) writes
  each output voxel from exactly one input voxel, so it is one matrix multiply followed by an interleave; through
  PyTorch it took ~130 ms at the top level, as a matrix multiply ~20 ms.
- :class:`InstanceNormNd`: under CPU autocast, instance norm runs in float32, so each normalised bf16 map is
  converted to float32 and back; run on the bf16 map directly (its statistics are still accumulated in float32
  by the kernel) it took ~33 ms instead of ~140 ms.

:func:`accelerate` swaps them into a network in place of the layers they replace; the function computed is the
same (tests compare both). Training keeps the original layers.

Example::

    network = accelerate(load_bundle("bundles/unet").network)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InstanceNormNd", "PairwiseMaxPool", "PointwiseConv", "StridedTransposedConv", "accelerate"]

_CONVS = (nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOLS = (nn.MaxPool2d, nn.MaxPool3d)
_INSTANCE_NORMS = (nn.InstanceNorm2d, nn.InstanceNorm3d)


def _tuple(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * dims


class PairwiseMaxPool(nn.Module):
    """Max pooling with kernel = stride and no padding, as element-wise maxima of strided views.

    Falls back to ``F.max_pool{2,3}d`` when a spatial size is not a multiple of the kernel.
    """

    def __init__(self, pool: nn.MaxPool2d | nn.MaxPool3d) -> None:
        super().__init__()
        self.dims = 3 if isinstance(pool, nn.MaxPool3d) else 2
        self.kernel_size = _tuple(pool.kernel_size, self.dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        if len(spatial) != self.dims or any(s % k for s, k in zip(spatial, self.kernel_size)):
            pool = F.max_pool3d if self.dims == 3 else F.max_pool2d
            return pool(x, self.kernel_size)
        for axis, k in enumerate(self.kernel_size, start=2):
            if k == 1:
                continue
            parts = [x[(slice(None),) * axis + (slice(i, None, k),)] for i in range(k)]
            out = parts[0]
            for part in parts[1:]:
                out = torch.maximum(out, part)
            x = out
        return x


class PointwiseConv(nn.Module):
    """A 1x1(x1) convolution as one matrix multiply over the channels (parameters shared with ``conv``)."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(x)
        weight = self.weight.to(dtype).flatten(1)  # (C_out, C_in)
        n, c, *spatial = x.shape
        if x.is_contiguous():
            out = torch.matmul(weight, x.to(dtype).reshape(n, c, -1))  # (N, C_out, voxels)
            if self.bias is not None:
                out = out + self.bias.to(dtype).view(1, -1, 1)
            return out.view(n, -1, *spatial)
        out = torch.matmul(x.to(dtype).movedim(1, -1), weight.t())  # channels-last: (N, *spatial, C_out)
        if self.bias is not None:
            out = out + self.bias.to(dtype)
        return out.movedim(-1, 1)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


class StridedTransposedConv(nn.Module):
    """A transposed convolution with kernel = stride (no padding, no overlap) as matrix multiply + interleave."""

    def __init__(self, conv: nn.ConvTranspose2d | nn.ConvTranspose3d) -> None:
        super().__init__()
        self.weight = conv.weight  # (C_in, C_out, *kernel)
        self.bias = conv.bias
        self.kernel_size = tuple(int(k) for k in conv.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(x)
        n, c_in, *spatial = x.shape
        dims = len(spatial)
        c_out = self.weight.shape[1]
        weight = self.weight.to(dtype).reshape(c_in, -1).t()  # (C_out * prod(kernel), C_in)
        out = torch.matmul(weight, x.to(dtype).reshape(n, c_in, -1))  # (N, C_out * prod(k), voxels)
        out = out.view(n, c_out, *self.kernel_size, *spatial)
        # (N, C_out, k1, k2, k3, D, H, W) -> (N, C_out, D, k1, H, k2, W, k3): each input voxel's block in place
        order = [0, 1] + [i for d in range(dims) for i in (2 + dims + d, 2 + d)]
        out = out.permute(order).reshape(n, c_out, *(s * k for s, k in zip(spatial, self.kernel_size)))
        if self.bias is not None:
            out = out + self.bias.to(dtype).view(1, -1, *(1,) * dims)
        return out


class InstanceNormNd(nn.Module):
    """Instance norm computed in the input's own precision, outside autocast's float32 promotion."""

    def __init__(self, norm: nn.InstanceNorm2d | nn.InstanceNorm3d) -> None:
        super().__init__()
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            weight = self.weight.to(x.dtype) if self.weight is not None else None
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.instance_norm(x, weight=weight, bias=bias, use_input_stats=True, eps=self.eps)


def _poolable(pool: nn.Module) -> bool:
    if not isinstance(pool, _POOLS):
        return False
    dims = 3 if isinstance(pool, nn.MaxPool3d) else 2
    stride = pool.stride if pool.stride is not None else pool.kernel_size
    return (
        _tuple(pool.kernel_size, dims) == _tuple(stride, dims)
        and set(_tuple(pool.padding, dims)) == {0}
        and set(_tuple(pool.dilation, dims)) == {1}
        and not pool.ceil_mode
        and not pool.return_indices
    )


def _pointwise(conv: nn.Module) -> bool:
    return (
        isinstance(conv, _CONVS)
        and set(conv.kernel_size) == {1}
        and set(conv.stride) == {1}
        and conv.groups == 1
        and set(_tuple(conv.padding, len(conv.kernel_size))) == {0}  # type: ignore[arg-type]
    )


def _strided_transposed(conv: nn.Module) -> bool:
    return (
        isinstance(conv, _TRANSPOSED)
        and tuple(conv.kernel_size) == tuple(conv.stride)
        and set(_tuple(conv.padding, len(conv.kernel_size))) == {0}  # type: ignore[arg-type]
        and set(conv.output_padding) <= {0}
        and set(conv.dilation) == {1}
        and conv.groups == 1
    )


def accelerate(network: nn.Module) -> nn.Module:
    """Replaces, in place, max pooling, 1x1 convolutions, stride-k transposed convolutions and instance norm
    (without running statistics) by the faster equivalents above; returns ``network``.

    For inference: the replacements share the parameters and support no backward-specific behaviour.
    """
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if _poolable(child):
                setattr(parent, name, PairwiseMaxPool(child))  # type: ignore[arg-type]
            elif _pointwise(child):
                setattr(parent, name, PointwiseConv(child))  # type: ignore[arg-type]
            elif _strided_transposed(child):
                setattr(parent, name, StridedTransposedConv(child))  # type: ignore[arg-type]
            elif isinstance(child, _INSTANCE_NORMS) and not child.track_running_stats:
                setattr(parent, name, InstanceNormNd(child))
    return network
