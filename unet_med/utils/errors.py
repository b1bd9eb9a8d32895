"""Errors a user can act on, and how a run started from the command line reports them: one line, no traceback.

``python -m monai.bundle run ...`` prints every uncaught exception with its full traceback, and MONAI wraps an
error raised while a config is parsed in two more (``Failed to instantiate ...``), so a reason such as
"no dataset_dir given" ends up buried in the middle of some 60 lines. The template's configs call
:func:`brief_errors` first thing in ``initialize``; from then on an uncaught :class:`UsageError` (anywhere in the
exception's chain) prints as ``error: <message>``, and a Ctrl-C as its message alone (the trainer's checkpoint
handler puts "stopped after epoch N; resume with ..." there). The process exits with Python's usual status: 1 for
an error, 130 (killed by SIGINT) for Ctrl-C. Anything else keeps its full traceback.

Example::

    brief_errors()
    raise DatasetError("no dataset_dir given: this bundle trains on real data; pass --dataset_dir DIR")
    # stderr: error: no dataset_dir given: this bundle trains on real data; pass --dataset_dir DIR
"""

from __future__ import annotations

import sys
from types import TracebackType

__all__ = ["UsageError", "brief_errors", "usage_error_in"]


class UsageError(Exception):
    """A run cannot go on as it was set up (its data, checkpoint, device or arguments); the message says what is
    wrong and what to do, so :func:`brief_errors` shows the message alone."""


def usage_error_in(error: BaseException) -> UsageError | None:
    """The first :class:`UsageError` in ``error``'s chain (itself, then its causes and contexts), or ``None``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UsageError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if isinstance(error, KeyboardInterrupt):  # on a line of its own: a progress bar may have been mid-line
        print(f"\n{error or 'interrupted'}", file=sys.stderr)
        return
    usage = usage_error_in(error)
    if usage is not None:
        print(f"error: {usage}", file=sys.stderr)
        return
    sys.__excepthook__(kind, error, tb)


def brief_errors() -> None:
    """Makes an uncaught :class:`UsageError` or Ctrl-C print one line instead of a traceback (idempotent).

    Installed as ``sys.excepthook``, so it changes only what reaches the top of the process; code that catches
    exceptions (tests, ``unet-med`` commands, MONAI FL) sees them unchanged.
    """
    sys.excepthook = _hook
