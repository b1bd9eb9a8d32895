"""Where a bundle lives, whatever the working directory.

MONAI resolves a bundle's ``"bundle_root": "."`` against the working directory, so a bundle run from the repo
root (``--config_file bundles/unet/configs/train.json``) would read and write in the wrong place. The configs here
ask :func:`locate_bundle_root` instead, which finds the bundle from the config file that was actually given.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["locate_bundle_root"]


def _config_files_from_argv(argv: Sequence[str]) -> list[str]:
    """The value of ``--config_file`` in a ``python -m monai.bundle ...`` command line, as a list of paths."""
    for i, arg in enumerate(argv):
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if value.startswith("["):
            try:
                return [str(v) for v in ast.literal_eval(value)]
            except (ValueError, SyntaxError):
                return []
        return [v for v in value.split(",") if v]
    return []


def locate_bundle_root(default: str | os.PathLike | None = None, argv: Sequence[str] | None = None) -> str:
    """Returns the absolute bundle folder.

    In order: the folder holding the ``configs/`` folder of the first ``--config_file`` on the command line; the
    working directory if it holds ``configs/metadata.json``; ``default``; the working directory.

    Args:
        default: fallback when neither the command line nor the working directory tells.
        argv: command line to inspect (default ``sys.argv``).
    """
    for config in _config_files_from_argv(sys.argv if argv is None else argv):
        folder = Path(config).resolve().parent
        return str(folder.parent if folder.name == "configs" else folder)
    cwd = Path.cwd()
    if (cwd / "configs" / "metadata.json").is_file():
        return str(cwd)
    return str(Path(default).resolve()) if default is not None else str(cwd)
