"""Atomic, resumable checkpoints for MONAI/Ignite training.

MONAI's ``CheckpointSaver`` writes with ``atomic=False`` and keeps the best metric only in memory, so a run
killed mid-write can leave a corrupt file and a resumed run forgets its best score. These two handlers close
both gaps while using Ignite's own ``Checkpoint.load_objects`` for restoring:

- :class:`ResumableCheckpoint` (a train handler) writes ``last.pt`` after every epoch with the model, optimizer,
  scheduler, trainer state, the evaluator's best metric and a record of the data and task it was trained on, and
  with ``resume=True`` restores all of it when the trainer starts (refusing a checkpoint of other data or another
  task), so a run killed with SIGKILL loses at most the epoch in progress. A Ctrl-C ends the run with one line
  saying after which epoch it stopped and how to resume.
- :class:`BestModelSaver` (a validation handler) writes the model weights (a plain state dict, loadable with
  ``weights_only=True``) whenever the evaluator's key metric improves.
- :class:`FinalModelSaver` (a train handler) writes the final weights when no validation chose any, so a finished
  run always leaves a model.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from unet_med.engines.provenance import check_record, training_record
from unet_med.utils import UsageError, atomic_path, is_rank_zero

__all__ = [
    "BestModelSaver",
    "CheckpointMissingError",
    "FinalModelSaver",
    "ResumableCheckpoint",
    "halve_weights",
    "load_network",
    "load_state_dict",
]

logger = logging.getLogger(__name__)


def _unwrap(module: Any) -> Any:
    """The plain module inside ``DistributedDataParallel`` / ``DataParallel``."""
    return (
        module.module
        if isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel))
        else module
    )


class CheckpointMissingError(UsageError, FileNotFoundError):
    """A weights or checkpoint file that is not there (``--resume true`` before any run, a wrong ``--model_file``)."""


def load_state_dict(path: str | os.PathLike | bytes, key: str | None = None) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` (no pickled code runs); returns ``checkpoint[key]`` if given.

    Args:
        path: the checkpoint file, or its bytes (as read and checked once by
            :func:`unet_med.bundle.recognize.recognize_bundle`).
        key: the entry to return.

    Raises:
        CheckpointMissingError: the file does not exist (a ``FileNotFoundError``).
        ValueError: the file is not a loadable weights-only checkpoint, or lacks ``key``.
    """
    source: Any
    if isinstance(path, bytes):
        source, path = io.BytesIO(path), Path("models/model.pt (checked bytes)")
    else:
        path = source = Path(path)
        if not path.is_file():
            raise CheckpointMissingError(f"checkpoint not found: {path}")
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


class _QuietRunLog(logging.Filter):
    """Keeps two kinds of misleading lines out of an engine's log.

    - Ignite's "Engine run resuming from iteration 0, epoch 0", logged before a checkpoint is loaded (and on
      every fresh MONAI run); :class:`ResumableCheckpoint` says where the run starts instead.
    - A Ctrl-C logged as an error: Ignite's "run is terminating due to exception" and MONAI ``StatsHandler``'s
      traceback; :class:`ResumableCheckpoint` ends the run with one line instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Engine run resuming from iteration"):
            return False
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            return False
        return not message.endswith("is terminating due to exception: ")  # KeyboardInterrupt has no message


_QUIET = _QuietRunLog()
_STATS_LOGGER = "monai.handlers.StatsHandler"  # where MONAI's StatsHandler logs an engine's exception by default


def _resume_command() -> str:
    """The command that resumes this run: the ``monai.bundle`` command line with ``--resume true``."""
    argv = list(sys.argv)
    if not argv or "monai" not in Path(argv[0]).parts or "bundle" not in Path(argv[0]).parts:
        return "the same command with --resume true"
    args = argv[1:]
    if "--resume" in args and args.index("--resume") + 1 < len(args):
        args[args.index("--resume") + 1] = "true"
    else:
        args += ["--resume", "true"]
    return "python -m monai.bundle " + shlex.join(args)


class ResumableCheckpoint:
    """Writes ``last.pt`` atomically every ``save_interval`` epochs and optionally resumes from it.

    The checkpoint also records what it was trained on (:func:`unet_med.engines.provenance.training_record`:
    a fingerprint of the split's files and the task), and resuming refuses a checkpoint whose record differs from
    this run's. A Ctrl-C during training ends with one line, "stopped after epoch N; resume with ...", instead of
    MONAI's logged traceback and Python's second one (see :func:`unet_med.utils.brief_errors`).

    Args:
        save_dir: folder for ``filename``.
        save_dict: objects with ``state_dict``/``load_state_dict`` to save, e.g.
            ``{"model": net, "optimizer": opt, "lr_scheduler": sched}``; the engine this handler is attached to
            is added as ``"trainer"`` (epoch and iteration counters).
        evaluator: the validation engine whose ``best_metric`` and ``best_metric_epoch`` are saved and restored.
        resume: restore everything from ``save_dir/filename`` when the trainer starts. The file is read and its
            record checked when the handler is made, before any epoch runs; a missing file is an error (say
            ``resume=false`` to start afresh).
        filename: the checkpoint's file name.
        save_interval: epochs between saves.
        datalist: the run's split (``{"training": [...], "validation": [...]}``) for the record.
        task: the run's task description (JSON-safe values: classes, channels, modality, spacing) for the record.

    Raises:
        CheckpointMissingError: ``resume`` and no checkpoint.
        unet_med.engines.provenance.CheckpointMismatchError: ``resume`` and the checkpoint was trained on other
            data or for another task.

    Example (bundle config)::

        {"_target_": "unet_med.engines.ResumableCheckpoint", "save_dir": "@ckpt_dir",
         "save_dict": {"model": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"},
         "evaluator": "@validate#evaluator", "resume": "@resume", "datalist": "@datalist",
         "task": {"class_names": "@class_names", "modality": "@modality"}}
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        evaluator: Any = None,
        resume: bool = False,
        filename: str = "last.pt",
        save_interval: int = 1,
        datalist: Mapping[str, Any] | None = None,
        task: Mapping[str, Any] | None = None,
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}.")
        self.path = Path(save_dir) / filename
        self.save_dict = dict(save_dict)
        self.evaluator = evaluator
        self.resume = resume
        self.save_interval = save_interval
        self.record = training_record(datalist, task or {}) if datalist is not None else None
        self.saved_epoch = 0
        self._checkpoint: dict[str, Any] | None = None
        if resume:
            self._checkpoint = self._read()

    def _read(self) -> dict[str, Any]:
        """The checkpoint to resume from, checked against this run's record."""
        if not self.path.is_file():
            raise CheckpointMissingError(
                f"checkpoint not found: {self.path}: nothing to resume; run without --resume true to start afresh"
            )
        checkpoint = load_state_dict(self.path)
        missing = [name for name in self.save_dict if name not in checkpoint]
        if missing:
            raise ValueError(f"{self.path}: checkpoint lacks {missing}; it has {sorted(checkpoint)}")
        saved = checkpoint.get("trained_on")
        if self.record is not None and isinstance(saved, Mapping):
            check_record(saved, self.record, self.path)
        elif self.record is not None:
            logger.warning("%s records nothing about its data or task (an older checkpoint): not checked", self.path)
        return dict(checkpoint)

    def attach(self, engine: Engine) -> None:
        """Registers saving on ``EPOCH_COMPLETED``, the start-up line, the Ctrl-C line and, with ``resume``,
        loading on ``STARTED``."""
        self.save_dict.setdefault("trainer", engine)
        missing = [name for name in self.save_dict if self._checkpoint is not None and name not in self._checkpoint]
        if missing:
            raise ValueError(f"{self.path}: checkpoint lacks {missing}; it has {sorted(self._checkpoint or {})}")
        for name in (engine.logger.name, getattr(self.evaluator, "logger", engine.logger).name, _STATS_LOGGER):
            logging.getLogger(name).addFilter(_QUIET)
        engine.add_event_handler(Events.STARTED, self.load if self.resume else self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._exception_raised)

    def state(self) -> dict[str, Any]:
        state = {name: _unwrap(obj).state_dict() for name, obj in self.save_dict.items()}
        if self.evaluator is not None:
            state["best_metric"] = torch.tensor(float(self.evaluator.state.best_metric))
            state["best_metric_epoch"] = torch.tensor(int(self.evaluator.state.best_metric_epoch))
        if self.record is not None:
            state["trained_on"] = self.record
        return state

    def save(self, engine: Engine) -> None:
        self.saved_epoch = engine.state.epoch
        if not is_rank_zero():
            return
        with atomic_path(self.path) as tmp:
            torch.save(self.state(), tmp)
        logger.debug("saved %s at epoch %d", self.path, engine.state.epoch)

    def _started(self, engine: Engine) -> None:
        if engine.state.epoch == 0:  # not a later round of federated training, which continues the same engine
            logger.info("training from scratch to epoch %s; checkpoints go to %s", engine.state.max_epochs, self.path)

    def load(self, engine: Engine) -> None:
        """Restores the saved objects; the trainer continues after the last completed epoch."""
        checkpoint = self._checkpoint if self._checkpoint is not None else self._read()
        max_epochs = engine.state.max_epochs
        to_load = {name: _unwrap(obj) for name, obj in self.save_dict.items()}
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint)
        engine.state.max_epochs = max_epochs  # the new run's setting wins, so training can be extended
        if self.evaluator is not None and "best_metric" in checkpoint:
            self.evaluator.state.best_metric = float(checkpoint["best_metric"])
            self.evaluator.state.best_metric_epoch = int(checkpoint["best_metric_epoch"])
        self.saved_epoch = engine.state.epoch
        self._checkpoint = None
        logger.info(
            "resuming from %s after epoch %d (iteration %d), training to epoch %s",
            self.path,
            engine.state.epoch,
            engine.state.iteration,
            max_epochs,
        )

    def _exception_raised(self, engine: Engine, error: BaseException) -> None:
        """Ctrl-C: one line saying where the run stopped and how to resume; anything else is re-raised as it is
        (without MONAI's ``StatsHandler`` logging its traceback before Python prints it again)."""
        if not isinstance(error, KeyboardInterrupt):
            raise error
        if self.saved_epoch:
            message = f"stopped after epoch {self.saved_epoch} ({self.path}); resume with: {_resume_command()}"
        else:
            message = f"stopped in epoch {engine.state.epoch}, before the first checkpoint; start again to train"
        # a plain KeyboardInterrupt, so callers catch it as one and Python still exits with SIGINT's status
        raise KeyboardInterrupt(message) from None


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


class FinalModelSaver:
    """Saves the final weights when no validation chose a model, so a finished run always leaves ``model.pt``.

    A train handler: when training completes and the evaluator never recorded a best epoch (``max_epochs`` below
    ``val_interval``, or validation never ran), it writes the network's state dict as :class:`BestModelSaver` would
    and logs which epoch the weights are from. When validation chose a model, that file stays as it is.

    Args:
        save_dir: output folder (the same as :class:`BestModelSaver`'s).
        network: the network (``DistributedDataParallel`` is unwrapped).
        evaluator: the validation engine; ``None`` means no validation, so the final weights are always saved.
        filename: file name of the weights.
    """

    def __init__(
        self, save_dir: str | os.PathLike, network: torch.nn.Module, evaluator: Any = None, filename: str = "model.pt"
    ) -> None:
        self.path = Path(save_dir) / filename
        self.network = network
        self.evaluator = evaluator

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        chosen = int(getattr(getattr(self.evaluator, "state", None), "best_metric_epoch", -1) or -1)
        if chosen >= 1 or not is_rank_zero():
            return
        with atomic_path(self.path) as tmp:
            torch.save(_unwrap(self.network).state_dict(), tmp)
        logger.warning(
            "no validation chose a model in %d epochs (validation runs every val_interval epochs): saved the final "
            "weights, epoch %d, to %s",
            engine.state.epoch,
            engine.state.epoch,
            self.path,
        )
