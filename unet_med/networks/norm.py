"""Instance norm that keeps the channels-last memory layout when the network is compiled.

PyTorch's ``instance_norm`` reshapes its input to ``(1, B*C, *spatial)`` and runs batch norm on it, which returns
the default (channels-first) layout: in a channels-last network every normalisation converts each feature map
twice, and under ``torch.compile`` the conversions stay. :class:`InstanceNorm3d` (and the 2D twin) compute the
same function from per-(sample, channel) mean and variance with element-wise operations, which keep any layout
and which the compiler fuses with the following activation.

The classes subclass ``torch.nn.InstanceNorm2d`` / ``InstanceNorm3d``: the same arguments, parameters and
state-dict keys, so weights trained with either load into the other. In eager mode they run PyTorch's own kernel
(bit-identical to ``torch.nn.InstanceNorm3d``); the element-wise form is used while compiling, where it pays.

Example::

    norm = InstanceNorm3d(16, affine=True)
    x = torch.randn(2, 16, 32, 48, 32).to(memory_format=torch.channels_last_3d)
    torch.compile(norm)(x).is_contiguous(memory_format=torch.channels_last_3d)  # True
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InstanceNorm2d", "InstanceNorm3d", "instance_norm", "swap_instance_norms"]


def instance_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5
) -> torch.Tensor:
    """Instance norm of ``x`` ``(B, C, *spatial)`` from element-wise operations, in float32, keeping the layout.

    Returns a tensor of ``x``'s dtype and memory layout, equal to ``torch.nn.functional.instance_norm`` (biased
    variance, statistics from the input) up to float32 rounding.
    """
    dims = tuple(range(2, x.dim()))
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=dims, keepdim=True, correction=0)
    scale = torch.rsqrt(var + eps)
    shape = (1, -1) + (1,) * len(dims)
    if weight is not None:
        scale = scale * weight.float().view(shape)
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.float().view(shape)
    return (xf * scale + shift).to(x.dtype)


class InstanceNorm2d(nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` whose compiled form keeps channels-last (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and not self.track_running_stats and torch.compiler.is_compiling():
            return instance_norm(x, self.weight, self.bias, self.eps)
        if x.dim() == self._get_no_batch_dim():
            return self._handle_no_batch_input(x)
        self._check_input_dim(x)
        return self._apply_instance_norm(x)  # what torch.nn.InstanceNorm2d.forward runs


class InstanceNorm3d(nn.InstanceNorm3d):
    """``torch.nn.InstanceNorm3d`` whose compiled form keeps channels-last (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and not self.track_running_stats and torch.compiler.is_compiling():
            return instance_norm(x, self.weight, self.bias, self.eps)
        if x.dim() == self._get_no_batch_dim():
            return self._handle_no_batch_input(x)
        self._check_input_dim(x)
        return self._apply_instance_norm(x)  # what torch.nn.InstanceNorm3d.forward runs


_SWAP: dict[type, type] = {nn.InstanceNorm2d: InstanceNorm2d, nn.InstanceNorm3d: InstanceNorm3d}


def swap_instance_norms(module: nn.Module) -> nn.Module:
    """Replaces, in place, every plain ``torch.nn.InstanceNorm2d/3d`` in ``module`` by the layout-keeping class.

    Parameters are moved over, so the state dict (keys and values) is unchanged. Returns ``module``.
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            cls = _SWAP.get(type(child))
            if cls is None:
                continue
            new = cls(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(parent, name, new)
    return module
