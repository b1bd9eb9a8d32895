"""Mirroring test-time augmentation, nnU-Net style, as a network wrapper a sliding-window inferer can call."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

__all__ = ["MirrorTTA", "SoftmaxNetwork", "mirrored"]


class SoftmaxNetwork(torch.nn.Module):
    """``softmax(network(x))`` over the channel axis, computed in float32 (returns ``(N, C, *spatial)``)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(x).float(), dim=1)


class MirrorTTA(torch.nn.Module):
    """Averages the softmax of ``network`` over every combination of flips of the given spatial axes.

    With 3 axes that is 8 forward passes per window (2D: 4). Each prediction is flipped back before averaging, so
    the output is aligned with the input. The output is probabilities (``(N, C, *spatial)``, float32), which the
    sliding window then blends; the argmax of the blend is the mask.

    Args:
        network: maps ``(N, C_in, *spatial)`` to logits ``(N, C, *spatial)`` (or to probabilities, when it says
            so with ``returns_probabilities``, as :class:`~unet_med.inference.ensemble.FoldEnsemble` does).
        axes: spatial axes to mirror (0 is the first spatial axis); default: all of them.

    Example::

        tta = MirrorTTA(net, axes=(0, 1, 2))  # 3D
        probs = tta(torch.zeros(1, 1, 48, 48, 32))  # (1, C, 48, 48, 32), sums to 1 over C
        tta2d = MirrorTTA(net2d, axes=(0, 1))  # 2D: 4 passes
    """

    def __init__(self, network: torch.nn.Module, axes: Sequence[int] | None = None, spatial_dims: int = 3) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        axes = tuple(range(spatial_dims)) if axes is None else tuple(int(a) for a in axes)
        bad = [a for a in axes if not 0 <= a < spatial_dims]
        if bad:
            raise ValueError(f"mirror axes must lie in 0..{spatial_dims - 1}, got {bad}")
        self.network = network
        self.flips: list[tuple[int, ...]] = [
            tuple(a + 2 for a in combo) for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        already = bool(getattr(self.network, "returns_probabilities", False))  # a fold ensemble
        for dims in self.flips:
            xi = torch.flip(x, dims) if dims else x
            out = self.network(xi).float()
            probs = out if already else torch.softmax(out, dim=1)
            if dims:
                probs = torch.flip(probs, dims)
            total = probs if total is None else total.add_(probs)
        if total is None:  # unreachable: flips always holds the identity
            raise RuntimeError("no flips")
        return total.div_(len(self.flips))


def mirrored(network: torch.nn.Module, mirror: bool, spatial_dims: int = 3) -> torch.nn.Module:
    """``MirrorTTA(network)`` (probabilities out) when ``mirror``, else ``network`` itself (logits out).

    For bundle configs: ``"network": "$unet_med.inference.mirrored(@trained_network, @mirror, @spatial_dims)"``.
    """
    return MirrorTTA(network, spatial_dims=spatial_dims) if mirror else network
