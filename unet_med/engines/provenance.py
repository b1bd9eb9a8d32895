"""What a checkpoint was trained on, so ``--resume true`` never continues a run on other data or another task.

:func:`training_record` condenses a run's split and task into a small JSON-safe record that
:class:`~unet_med.engines.checkpoint.ResumableCheckpoint` stores in ``last.pt``; :func:`check_record` compares
the record of a checkpoint with the run about to resume from it.

- The dataset fingerprint is a SHA-256 over the sorted training and validation cases, each as the names and sizes
  of its files (not their folders, so a dataset moved elsewhere still matches; not their contents, which would
  mean reading every file).
- The task is the run's task description as compact JSON (spatial dims, channels, classes, modality, spacing), so
  a mismatch can be named.

Example::

    record = training_record(datalist, {"modality": "mri", "class_names": ["background", "organ", "lesion"]})
    check_record(saved=checkpoint["trained_on"], current=record, path="models/last.pt")  # or CheckpointMismatchError
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unet_med.utils.errors import UsageError

__all__ = ["CheckpointMismatchError", "check_record", "dataset_fingerprint", "training_record"]


class CheckpointMismatchError(UsageError, ValueError):
    """A checkpoint was trained on other data, or for another task, than the run that would resume from it."""


def _files(value: Any) -> list[tuple[str, int]]:
    """(name, size) of each file an item entry names; sizes of missing files are -1."""
    paths = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for p in paths:
        if isinstance(p, (str, os.PathLike)):
            path = Path(p)
            out.append((path.name, path.stat().st_size if path.is_file() else -1))
    return out


def _cases(items: Sequence[Mapping[str, Any]]) -> list[list[tuple[str, int]]]:
    return sorted([entry for key in sorted(item) for entry in _files(item[key])] for item in items)


def dataset_fingerprint(datalist: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """SHA-256 (hex) of the sorted training and validation cases, each the names and sizes of its files."""
    doc = {part: _cases(datalist.get(part, [])) for part in ("training", "validation")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def training_record(datalist: Mapping[str, Sequence[Mapping[str, Any]]], task: Mapping[str, Any]) -> dict[str, Any]:
    """The record stored in a checkpoint: dataset fingerprint, case counts and the task as compact JSON."""
    return {
        "dataset": dataset_fingerprint(datalist),
        "training_cases": len(datalist.get("training", [])),
        "validation_cases": len(datalist.get("validation", [])),
        "task": json.dumps(dict(task), sort_keys=True, separators=(",", ":")),
    }


def check_record(saved: Mapping[str, Any], current: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Raises :class:`CheckpointMismatchError` (one line) when ``saved`` and ``current`` differ in task or data."""
    advice = "start afresh without --resume true, or give this run its own --ckpt_dir"
    if saved.get("task") != current.get("task"):
        before, now = json.loads(saved.get("task") or "{}"), json.loads(current["task"])
        keys = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        diff = "; ".join(f"{k} {before.get(k)!r} then, {now.get(k)!r} now" for k in keys)
        raise CheckpointMismatchError(f"{path} was trained for another task ({diff}): {advice}")
    if saved.get("dataset") != current.get("dataset"):
        raise CheckpointMismatchError(
            f"{path} was trained on other data ({saved.get('training_cases')} training and "
            f"{saved.get('validation_cases')} validation cases, fingerprint {str(saved.get('dataset'))[:12]}) than "
            f"this run ({current['training_cases']} and {current['validation_cases']}, fingerprint "
            f"{current['dataset'][:12]}): {advice}"
        )
