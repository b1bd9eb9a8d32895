"""The ``unet-med`` command line: one module per group of subcommands, each with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unet_med import __version__

__all__ = ["build_parser", "main"]

#: Modules that add subcommands; each defines ``register(subparsers)`` and sets ``func`` on its parsers.
COMMAND_MODULES = (
    "unet_med.cli.data",
    "unet_med.cli.plan",
    "unet_med.cli.predict",
    "unet_med.cli.bundle",
    "unet_med.cli.fl",
    "unet_med.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unet-med", description="U-Net segmentation bundles on MONAI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns the exit status.

    A subcommand that sets ``takes_extra`` (``unet-med bundle run``) gets the arguments argparse does not know
    (MONAI-style ``--ID VALUE`` overrides) as a second argument.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "takes_extra", False):
        return int(args.func(args, extra))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
