"""The classic U-Net (Ronneberger et al., 2015) for 2D and 3D, written against MONAI conventions.

Layout, for ``features=(64, 128, 256, 512, 1024)``::

    encoder.0 (64) ─────────────────────────────────────────────── decoder.3 (64) ── head
      └ pool.0 ─ encoder.1 (128) ─────────────────────── decoder.2 (128) ┘
                   └ pool.1 ─ encoder.2 (256) ─── decoder.1 (256) ┘
                                └ pool.2 ─ encoder.3 (512) ─ decoder.0 (512)
                                             └ pool.3 ─ bridge (1024) ┘

Each encoder block and the bridge are two 3x3 (3x3x3) convolutions, each followed by optional normalisation,
the activation and optional dropout. Each decoder block is a 2x2 (2x2x2) transposed convolution that halves the
channels, concatenation with the matching encoder output, and two such convolutions. A 1x1 convolution head
returns logits.

The paper's network ended in a pixel-wise softmax (a sigmoid for one class). Here, per MONAI convention, the
head returns raw logits: the loss (for example ``monai.losses.DiceCELoss``) and the post-transforms
(``Activations`` / ``AsDiscrete``) apply softmax or sigmoid. Convolutions are padded ("same"), unlike the paper's
valid convolutions, so the output has the input's spatial size.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from unet_med.networks.norm import swap_instance_norms

__all__ = ["UNet"]

logger = logging.getLogger(__name__)


def _per_axis(value: int | Sequence[int], spatial_dims: int, name: str) -> tuple[int, ...]:
    """Broadcasts ``value`` to one positive int per spatial axis."""
    values = (value,) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != spatial_dims or any(v < 1 for v in values):
        raise ValueError(f"{name} must be a positive int or {spatial_dims} positive ints, got {value!r}.")
    return values


def _spec(value: Any) -> Any:
    """A MONAI layer spec with JSON lists turned into the tuples MONAI's factories expect."""
    return tuple(value) if isinstance(value, list) else value


class UNet(nn.Module):
    """The classic U-Net in 2D or 3D, with MONAI layer specs and optional deep supervision.

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (classes, background included, for softmax losses).
        features: widths of the encoder blocks followed by the bridge; ``len(features) - 1`` is the number of
            poolings. The classic design is ``(64, 128, 256, 512, 1024)``; shorter or narrower tuples give
            shallower, leaner nets for small 3D patches on CPU.
        act: activation, a MONAI spec such as ``"relu"`` or ``["leakyrelu", {"negative_slope": 0.01}]``.
        norm: normalisation between convolution and activation: ``None`` (the classic design), ``"batch"``,
            ``"instance"``, ``["instance", {"affine": true}]``, ``["group", {"num_groups": 8}]``.
        dropout: dropout after the activation: ``None``, a probability, or a MONAI spec.
        bias: whether the convolutions have a bias.
        pool_sizes: pooling size per stage (``len(features) - 1`` entries), each an int or one int per axis,
            or a single int/per-axis tuple used for every stage. ``(1, 2, 2)`` in the first stages keeps a thick
            slice axis unpooled. The matching transposed convolution upsamples by the same factor.
        deep_supervision: in training mode, return a list ``[full, half, quarter, ...]`` of logits from the
            decoder stages (all but the deepest), for ``monai.losses.DeepSupervisionLoss``. In eval mode the
            output is always one tensor.

    Shapes:
        input ``(B, in_channels, *spatial)`` where each spatial size is divisible by the total pooling factor
        along its axis (16 for the classic design); output ``(B, out_channels, *spatial)``.

    Examples::

        # 2D, the paper's configuration (31,030,658 parameters)
        net = UNet(2, in_channels=1, out_channels=2)
        net(torch.rand(1, 1, 512, 512)).shape  # (1, 2, 512, 512)

        # 3D, lean, with instance norm and no pooling of the thick slice axis in the first stage
        net = UNet(3, 1, 3, features=(16, 32, 64, 128), norm="instance", pool_sizes=[(2, 2, 1), 2, 2])
        net(torch.rand(2, 1, 64, 64, 32)).shape  # (2, 3, 64, 64, 32)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        act: str | tuple | list = "relu",
        norm: str | tuple | list | None = None,
        dropout: float | str | tuple | list | None = None,
        bias: bool = True,
        pool_sizes: int | Sequence[int | Sequence[int]] = 2,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}.")
        features = tuple(int(f) for f in features)
        if len(features) < 2 or any(f < 1 for f in features):
            raise ValueError(f"features needs at least two positive widths (one block and the bridge), got {features}.")
        n_pools = len(features) - 1
        per_stage: Sequence[Any]
        if isinstance(pool_sizes, int) or (
            len(pool_sizes) == spatial_dims and all(isinstance(p, int) for p in pool_sizes) and n_pools != spatial_dims
        ):
            per_stage = [pool_sizes] * n_pools  # one size (scalar or per-axis) for every stage
        else:
            per_stage = pool_sizes
        if len(per_stage) != n_pools:
            raise ValueError(f"pool_sizes needs {n_pools} entries (one per pooling), got {len(per_stage)}.")
        pools = [_per_axis(p, spatial_dims, "each pool size") for p in per_stage]
        # JSON configs give specs as lists; MONAI's factories take tuples
        act_spec, norm_spec, dropout_spec = _spec(act), _spec(norm), _spec(dropout)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.pool_sizes = pools
        self.deep_supervision = deep_supervision
        factors = [1] * spatial_dims
        for p in pools:
            factors = [f * s for f, s in zip(factors, p)]
        self.divisor = factors  # total pooling factor per axis: input sizes must be multiples

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    Convolution(
                        spatial_dims,
                        c,
                        c_out,
                        kernel_size=3,
                        act=act_spec,
                        norm=norm_spec,
                        dropout=dropout_spec,
                        bias=bias,
                        adn_ordering="NAD",
                    )
                    for c in (c_in, c_out)
                )
            )

        conv_t = Conv[Conv.CONVTRANS, spatial_dims]
        conv = Conv[Conv.CONV, spatial_dims]
        max_pool = Pool[Pool.MAX, spatial_dims]
        widths = (in_channels, *features[:-1])
        self.encoder = nn.ModuleList(block(c_in, c_out) for c_in, c_out in itertools.pairwise(widths))
        self.pool = nn.ModuleList(max_pool(kernel_size=p, stride=p) for p in pools)
        self.bridge = block(features[-2], features[-1])
        # decoder.0 is the deepest; decoder.i upsamples features[-1 - i] to features[-2 - i].
        deep_to_shallow = list(range(n_pools - 1, -1, -1))
        self.upsample = nn.ModuleList(
            conv_t(features[i + 1], features[i], kernel_size=pools[i], stride=pools[i], bias=bias)
            for i in deep_to_shallow
        )
        self.decoder = nn.ModuleList(block(2 * features[i], features[i]) for i in deep_to_shallow)
        self.head = conv(features[0], out_channels, kernel_size=1)
        # Auxiliary heads on every decoder stage but the last, deepest first; used in training only.
        self.aux_heads = (
            nn.ModuleList(conv(features[i], out_channels, kernel_size=1) for i in deep_to_shallow[:-1])
            if deep_supervision
            else nn.ModuleList()
        )
        # same parameters and eager kernel; under torch.compile the norm keeps channels-last (networks/norm.py)
        swap_instance_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Returns logits ``(B, out_channels, *spatial)``; a list of them (full size first) when training with
        deep supervision."""
        self._check_input(x)
        skips: list[torch.Tensor] = []
        for encode, pool in zip(self.encoder, self.pool):
            x = encode(x)
            skips.append(x)
            x = pool(x)
        x = self.bridge(x)
        stages: list[torch.Tensor] = []
        for upsample, decode in zip(self.upsample, self.decoder):
            x = decode(torch.cat([skips.pop(), upsample(x)], dim=1))
            stages.append(x)
        out = self.head(x)
        if self.training and self.deep_supervision:
            outputs = [out]
            for i, aux_head in enumerate(self.aux_heads):  # deepest first; reversed below to full size first
                outputs.insert(1, aux_head(stages[i]))
            return outputs
        return out

    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # shapes are fixed by the example input; checks would only warn
            return
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D input (B, C, *spatial) for spatial_dims={self.spatial_dims}, "
                f"got shape {list(x.shape)}."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {x.shape[1]} (shape {list(x.shape)}).")
        spatial = [int(s) for s in x.shape[2:]]
        padded = [-(-s // d) * d for s, d in zip(spatial, self.divisor)]
        if padded != spatial:
            raise ValueError(
                f"spatial size {spatial} is not divisible by {self.divisor} (the total pooling factor per axis); "
                f"pad to {padded}, e.g. with monai.transforms.DivisiblePad(k={self.divisor})."
            )
