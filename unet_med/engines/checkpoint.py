"""Atomic, resumable checkpoints for MONAI/Ignite training.

MONAI's ``CheckpointSaver`` writes with ``atomic=False`` and keeps the best metric only in memory, so a run
killed mid-write can leave a corrupt file and a resumed run forgets its best score. These two handlers close
both gaps while using Ignite's own ``Checkpoint.load_objects`` for restoring:

- :class:`ResumableCheckpoint` (a train handler) writes ``last.pt`` after every epoch with the model, optimizer,
  scheduler, trainer state and the evaluator's best metric, and with ``resume=True`` restores all of it when the
  trainer starts, so a run killed with SIGKILL loses at most the epoch in progress.
- :class:`BestModelSaver` (a validation handler) writes the model weights (a plain state dict, loadable with
  ``weights_only=True``) whenever the evaluator's key metric improves.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from unet_med.utils import atomic_path, is_rank_zero

__all__ = ["BestModelSaver", "ResumableCheckpoint", "halve_weights", "load_network", "load_state_dict"]

logger = logging.getLogger(__name__)


def _unwrap(module: Any) -> Any:
    """The plain module inside ``DistributedDataParallel`` / ``DataParallel``."""
    return (
        module.module
        if isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel))
        else module
    )


def load_state_dict(path: str | os.PathLike | bytes, key: str | None = None) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` (no pickled code runs); returns ``checkpoint[key]`` if given.

    Args:
        path: the checkpoint file, or its bytes (as read and checked once by
            :func:`unet_med.bundle.recognize.recognize_bundle`).
        key: the entry to return.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a loadable weights-only checkpoint, or lacks ``key``.
    """
    source: Any
    if isinstance(path, bytes):
        source, path = io.BytesIO(path), Path("models/model.pt (checked bytes)")
    else:
        path = source = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors, truncation, non-tensor payloads
        raise ValueError(f"{path}: not a weights-only checkpoint ({e.__class__.__name__}: {e})") from e
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            raise ValueError(f"{path}: no {key!r} entry in the checkpoint")
        state = state[key]
    return state


def halve_weights(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Stores a state dict's floating-point tensors in float16 (half the file size), atomically.

    ``load_network`` casts them back to the network's dtype, so a float16 file loads into a float32 network.

    Args:
        path: a state dict saved with ``torch.save`` (loaded with ``weights_only=True``).
        out: where to write; default: over ``path``.

    Raises:
        ValueError: the file is not a state dict of tensors, or a value would overflow float16.
    """
    state = load_state_dict(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    half = {}
    for name, tensor in state.items():
        if tensor.is_floating_point():
            if tensor.numel() and float(tensor.abs().max()) > torch.finfo(torch.float16).max:
                raise ValueError(f"{path}: {name} has values beyond the float16 range")
            tensor = tensor.to(torch.float16)
        half[name] = tensor
    target = Path(out) if out is not None else Path(path)
    with atomic_path(target) as tmp:
        torch.save(half, tmp)
    return target


def load_network(
    network: torch.nn.Module, path: str | os.PathLike | bytes, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Loads weights from ``path`` (a state dict, or a checkpoint with a ``"model"`` entry) with
    ``weights_only=True`` into ``network``, moves it to ``device`` and returns it in eval mode."""
    state: Mapping[str, Any] = load_state_dict(path)
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        where = "the checked weights" if isinstance(path, bytes) else str(path)
        raise ValueError(f"{where}: weights do not fit the network: {e}") from e
    return network.to(device).eval()


class ResumableCheckpoint:
    """Writes ``last.pt`` atomically every ``save_interval`` epochs and optionally resumes from it.

    Args:
        save_dir: folder for ``filename``.
        save_dict: objects with ``state_dict``/``load_state_dict`` to save, e.g.
            ``{"model": net, "optimizer": opt, "lr_scheduler": sched}``; the engine this handler is attached to
            is added as ``"trainer"`` (epoch and iteration counters).
        evaluator: the validation engine whose ``best_metric`` and ``best_metric_epoch`` are saved and restored.
        resume: restore everything from ``save_dir/filename`` when the trainer starts. A missing file is an
            error (say ``resume=false`` to start afresh).
        filename: the checkpoint's file name.
        save_interval: epochs between saves.

    Example (bundle config)::

        {"_target_": "unet_med.engines.ResumableCheckpoint", "save_dir": "@ckpt_dir",
         "save_dict": {"model": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"},
         "evaluator": "@validate#evaluator", "resume": "@resume"}
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        evaluator: Any = None,
        resume: bool = False,
        filename: str = "last.pt",
        save_interval: int = 1,
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}.")
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.evaluator = evaluator
        self.resume = resume
        self.save_interval = save_interval

    def attach(self, engine: Engine) -> None:
        """Registers saving on ``EPOCH_COMPLETED`` and, with ``resume``, loading on ``STARTED``."""
        self.save_dict.setdefault("trainer", engine)
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)

    def state(self) -> dict[str, Any]:
        state = {name: _unwrap(obj).state_dict() for name, obj in self.save_dict.items()}
        if self.evaluator is not None:
            state["best_metric"] = torch.tensor(float(self.evaluator.state.best_metric))
            state["best_metric_epoch"] = torch.tensor(int(self.evaluator.state.best_metric_epoch))
        return state

    def save(self, engine: Engine) -> None:
        if not is_rank_zero():
            return
        with atomic_path(self.path) as tmp:
            torch.save(self.state(), tmp)
        logger.debug("saved %s at epoch %d", self.path, engine.state.epoch)

    def load(self, engine: Engine) -> None:
        """Restores the saved objects; the trainer continues after the last completed epoch."""
        checkpoint = load_state_dict(self.path)
        missing = [name for name in self.save_dict if name not in checkpoint]
        if missing:
            raise ValueError(f"{self.path}: checkpoint lacks {missing}; it has {sorted(checkpoint)}")
        max_epochs = engine.state.max_epochs
        to_load = {name: _unwrap(obj) for name, obj in self.save_dict.items()}
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint)
        engine.state.max_epochs = max_epochs  # the new run's setting wins, so training can be extended
        if self.evaluator is not None and "best_metric" in checkpoint:
            self.evaluator.state.best_metric = float(checkpoint["best_metric"])
            self.evaluator.state.best_metric_epoch = int(checkpoint["best_metric_epoch"])
        logger.info("resumed from %s after epoch %d", self.path, engine.state.epoch)


class BestModelSaver:
    """Saves the network's state dict atomically whenever the evaluator's key metric improves.

    Attach to a MONAI evaluator with a ``key_val_metric``; MONAI updates ``state.best_metric_epoch`` when the metric
    improves, and this handler (registered after it) writes the weights then.

    Args:
        save_dir: output folder.
        network: the network (``DistributedDataParallel`` is unwrapped).
        filename: file name of the weights (``model.pt``, as MONAI bundles expect).
    """

    def __init__(self, save_dir: str | os.PathLike, network: torch.nn.Module, filename: str = "model.pt") -> None:
        self.path = Path(save_dir) / filename
        self.network = network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        if engine.state.best_metric_epoch != engine.state.epoch or not is_rank_zero():
            return
        with atomic_path(self.path) as tmp:
            torch.save(_unwrap(self.network).state_dict(), tmp)
        logger.info(
            "saved best model (%.4f at epoch %d) to %s", engine.state.best_metric, engine.state.epoch, self.path
        )
