"""Mixed precision around any MONAI inferer, on CPU (bf16) as well as GPU.

MONAI's engines implement ``amp`` with ``torch.autocast("cuda")`` only, which does nothing for a CPU network. Wrapping
the inferer instead works on every device: on a CPU with AVX-512 BF16 the network runs in bfloat16 while the loss,
the stitching of windows and the metrics stay in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["AutocastInferer"]


class AutocastInferer(Inferer):
    """Runs ``inferer`` under ``torch.autocast`` for the input's device type and returns float32 outputs.

    Args:
        inferer: the wrapped inferer (``SimpleInferer``, ``SlidingWindowInferer``, ...).
        enabled: turn autocast on; when off this is a pass-through.
        dtype: the low-precision type (``torch.bfloat16`` by default; ``"float16"``/``"bfloat16"`` strings work in
            configs).

    Example::

        inferer = AutocastInferer(SlidingWindowInferer(roi_size=(96, 96, 96), mode="gaussian"), enabled=True)
        logits = inferer(volume, network)  # float32, computed in bf16 on CPU
    """

    def __init__(self, inferer: Inferer, enabled: bool = True, dtype: torch.dtype | str = torch.bfloat16) -> None:
        super().__init__()
        self.inferer = inferer
        self.enabled = bool(enabled)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast(device_type=inputs.device.type, dtype=self.dtype):
            outputs = self.inferer(inputs, network, *args, **kwargs)
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(o.float() for o in outputs)
        return outputs.float()
