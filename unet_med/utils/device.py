"""Checking the device a run asks for before any work, so ``--device cuda`` on a CPU-only install is one line."""

from __future__ import annotations

from typing import Any

import torch

from unet_med.utils.errors import UsageError

__all__ = ["DeviceError", "check_device"]


class DeviceError(UsageError, RuntimeError):
    """The requested device does not exist on this machine."""


def check_device(device: Any) -> torch.device:
    """Returns ``device`` as a ``torch.device`` when this machine has it.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``.

    Raises:
        DeviceError: a CUDA device on a machine without one (the message says whether this torch is a CPU-only
            build), a CUDA index beyond the devices present, or an MPS device where there is none.
        ValueError: not a device name.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device {device}: not a device name (cpu, cuda, cuda:N, mps)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DeviceError(
                f"--device {device}: no CUDA device is available (torch {torch.__version__} is {build}); "
                "use --device cpu, or leave --device out to use a GPU when there is one"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA device(s), numbered from 0")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"--device {device}: no MPS device is available; use --device cpu")
    return dev
