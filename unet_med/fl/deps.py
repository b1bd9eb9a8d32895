"""The optional NVIDIA FLARE dependency: one message that names the extra to install."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

__all__ = ["FL_EXTRA_HINT", "fl_install_command", "have_nvflare", "require_nvflare"]


def fl_install_command() -> str:
    """The command that installs the ``fl`` extra into this Python: unet_med is installed from its clone (it is not
    on a package index), so ``pip install -e '<clone>[fl]'`` with this interpreter's pip."""
    clone = Path(__file__).resolve().parents[2]
    if (clone / "pyproject.toml").is_file():
        return f"{shlex.quote(sys.executable)} -m pip install -e {shlex.quote(f'{clone}[fl]')}"
    return "pip install -e '.[fl]' in your unet_med clone"


#: Appended to every error about a missing FLARE package.
FL_EXTRA_HINT = (
    f"federated learning needs NVIDIA FLARE and MONAI's integration, the 'fl' extra (unet-med is not on a package "
    f"index; install the extra from the clone): {fl_install_command()}"
)


def have_nvflare() -> bool:
    """Whether ``nvflare`` and ``monai_nvflare`` can be imported (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("nvflare", "monai_nvflare"))


def require_nvflare() -> None:
    """Raises an ``ImportError`` naming the ``fl`` extra when ``nvflare`` or ``monai_nvflare`` is missing."""
    missing = [name for name in ("nvflare", "monai_nvflare") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"{', '.join(missing)} not installed; {FL_EXTRA_HINT}")
