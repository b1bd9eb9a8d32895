"""The training step's network run through ``torch.compile`` and, optionally, in channels-last memory.

MONAI's ``SupervisedTrainer`` calls ``inferer(inputs, network)`` for the forward pass of every step. Wrapping
that inferer is enough to compile the step's forward and backward without subclassing the trainer: the compiled
module shares the network's parameters, so the optimizer, the checkpoints and the evaluator (which runs the plain
module in eager mode) see the same weights. ``torch.compile`` fuses each normalisation with its activation and,
with channels-last, keeps the activations in one layout; instance norm in eager mode converts every map back to
the default layout.

The first step pays the compilation (about 30-50 s for the bundles' 3D networks on 2 CPU cores, seconds with a
warm Inductor cache); input shapes must not change between steps, or every new shape compiles again: the train
loader drops its last, smaller batch when this is on.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

__all__ = ["CompiledInferer", "can_compile"]

logger = logging.getLogger(__name__)


def _channels_last(dims: int) -> torch.memory_format:
    return torch.channels_last_3d if dims == 5 else torch.channels_last


def can_compile(device: torch.device, backend: str = "inductor") -> bool:
    """Whether ``torch.compile`` can build code here: Inductor on a CPU needs a C++ compiler (``$CXX``, ``g++``,
    ``clang++``, ``c++`` or MSVC's ``cl``), which many workstations lack; elsewhere it is assumed to work."""
    if backend != "inductor" or device.type != "cpu":
        return True
    names = [os.environ.get("CXX", ""), "g++", "clang++", "c++", "cl"]
    return any(name and shutil.which(name) for name in names)


class CompiledInferer(Inferer):
    """Runs ``inferer`` with a compiled (and optionally channels-last) view of the network it is given.

    Args:
        inferer: the wrapped inferer, usually ``SimpleInferer`` for the training step.
        enabled: compile the network; when off the network runs eagerly (``channels_last`` still applies).
        channels_last: store the network's weights and the inputs channels-last (NHWC / NDHWC).
        dynamic: passed to ``torch.compile``; ``False`` specialises on the first input shape.
        backend: ``torch.compile``'s backend (``"inductor"`` generates fused CPU/GPU code; ``"aot_eager"`` only
            traces, for quick checks).

    Example::

        inferer = AutocastInferer(CompiledInferer(SimpleInferer(), enabled=True), enabled=True)  # bf16 on CPU
        logits = inferer(batch, network)  # network's parameters are used in place
    """

    def __init__(
        self,
        inferer: Inferer,
        enabled: bool = True,
        channels_last: bool = False,
        dynamic: bool | None = False,
        backend: str = "inductor",
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.enabled = bool(enabled)
        self.channels_last = bool(channels_last)
        self.dynamic = dynamic
        self.backend = backend
        self._network: nn.Module | None = None
        self._compiled: Any = None

    def _prepare(self, network: nn.Module, ndim: int, device: torch.device) -> Any:
        if network is not self._network:
            if self.channels_last:
                # in place: the optimizer keeps the same Parameter objects
                network.to(memory_format=_channels_last(ndim))  # type: ignore[call-overload]
            self._network = network
            compile_here = self.enabled and can_compile(device, self.backend)
            if self.enabled and not compile_here:
                logger.warning(
                    "no C++ compiler found (set CXX or install g++/clang): training runs without torch.compile"
                )
            self._compiled = (
                torch.compile(network, dynamic=self.dynamic, backend=self.backend) if compile_here else network
            )
            if compile_here:
                logger.info("compiling the training step's network (the first iteration takes longer)")
        return self._compiled

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        model = self._prepare(network, inputs.dim(), inputs.device)
        if isinstance(inputs, MetaTensor):  # a plain tensor: no __torch_function__ for the compiler to trace
            inputs = inputs.as_tensor()
        if self.channels_last and inputs.dim() in (4, 5):
            inputs = inputs.contiguous(memory_format=_channels_last(inputs.dim()))
        return self.inferer(inputs, model, *args, **kwargs)
