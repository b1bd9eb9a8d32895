"""Where a bundle lives, whatever the working directory.

MONAI resolves a bundle's ``"bundle_root": "."`` against the working directory, so a bundle run from elsewhere
(``--config_file bundles/unet/configs/train.json`` from the repo root, or MONAI FL's ``MonaiAlgo`` started in a
client's work folder) would read and write in the wrong place. The configs here ask :func:`locate_bundle_root`
instead, which finds the bundle from the config file actually being run, and never falls back to the working
directory: when it cannot tell, it says so, and ``--bundle_root`` settles it.
"""

from __future__ import annotations

import ast
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["evaluated_weights", "locate_bundle_root", "run_dir", "weights_dir"]

logger = logging.getLogger(__name__)


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


def _workflow_config_root() -> Path | None:
    """The config folder of the MONAI ``ConfigWorkflow`` whose parsing is running (found on the call stack)."""
    try:
        from monai.bundle import ConfigWorkflow
    except ImportError:  # pragma: no cover - MONAI is a dependency
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, ConfigWorkflow) and getattr(owner, "config_root_path", None) is not None:
            return Path(owner.config_root_path).resolve()
        frame = frame.f_back
    return None


def locate_bundle_root(argv: Sequence[str] | None = None) -> str:
    """Returns the absolute bundle folder.

    In order: the folder holding the config folder of the MONAI ``ConfigWorkflow`` being initialised or run
    (``python -m monai.bundle run``, MONAI FL's ``MonaiAlgo``, ``create_workflow``); the folder holding the
    ``configs/`` folder of the first ``--config_file`` on the command line (other ``monai.bundle`` commands).

    Args:
        argv: command line to inspect (default ``sys.argv``).

    Raises:
        ValueError: neither tells where the bundle is; pass ``bundle_root`` explicitly.
    """
    folder = _workflow_config_root()
    if folder is None:
        configs = _config_files_from_argv(sys.argv if argv is None else argv)
        folder = Path(configs[0]).resolve().parent if configs else None
    if folder is None:
        raise ValueError(
            "cannot tell which bundle this config belongs to: run it with --config_file BUNDLE/configs/X.json "
            "or set bundle_root explicitly (--bundle_root BUNDLE, or parser['bundle_root'] = BUNDLE)"
        )
    return str(folder.parent if folder.name == "configs" else folder)


def run_dir(bundle_root: str, fold: int | None = None) -> str:
    """Where a training run writes its logs and split: ``<bundle>/runs``, or ``<bundle>/runs/fold{k}`` for
    cross-validation fold ``k`` (so folds never overwrite each other)."""
    runs = f"{bundle_root}/runs"
    return runs if fold is None else f"{runs}/fold{int(fold)}"


def weights_dir(bundle_root: str, fold: int | None = None) -> str:
    """Where a training run writes ``model.pt`` and ``last.pt``: ``<bundle>/runs/models``, or
    ``<bundle>/runs/fold{k}/models`` for fold ``k``.

    Never the bundle's own ``models/``: a run's weights are local outputs (``runs/`` is not tracked) until they are
    shipped on purpose, by copying ``runs/models/model.pt`` to ``models/model.pt`` or, for folds,
    ``unet-med bundle ensemble``.
    """
    return f"{run_dir(bundle_root, fold)}/models"


def evaluated_weights(bundle_root: str, ckpt_dir: str) -> str:
    """The weights ``evaluate.json`` evaluates (logged): the training run's ``<ckpt_dir>/model.pt`` when there is
    one, else the bundle's shipped ``models/model.pt``. ``--model_file`` names any other."""
    run = Path(ckpt_dir) / "model.pt"
    chosen = run if run.is_file() else Path(bundle_root) / "models" / "model.pt"
    logger.info("evaluating %s (%s)", chosen, "the training run's weights" if chosen == run else "the shipped weights")
    return str(chosen)
