"""The optional NVIDIA FLARE dependency: one message that names the extra to install."""

from __future__ import annotations

import importlib.util

__all__ = ["FL_EXTRA_HINT", "have_nvflare", "require_nvflare"]

#: Appended to every error about a missing FLARE package.
FL_EXTRA_HINT = "federated learning needs NVIDIA FLARE and MONAI's integration: pip install 'unet-med[fl]'"


def have_nvflare() -> bool:
    """Whether ``nvflare`` and ``monai_nvflare`` can be imported (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("nvflare", "monai_nvflare"))


def require_nvflare() -> None:
    """Raises an ``ImportError`` naming the ``fl`` extra when ``nvflare`` or ``monai_nvflare`` is missing."""
    missing = [name for name in ("nvflare", "monai_nvflare") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"{', '.join(missing)} not installed; {FL_EXTRA_HINT}")
