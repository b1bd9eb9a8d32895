"""Does a dataset fit the task a bundle was made for? Checked before training, after the files themselves.

:func:`~unet_med.data.checks.check_dataset` finds broken files; this finds a dataset that is fine in itself but
contradicts the task: a CT set given to an MRI bundle, a 2-class set given to a 3-class bundle. It compares

- the modality named per channel in ``dataset.json`` (MSD ``"modality"``, nnU-Net v2 ``"channel_names"``) with the
  task's modality (names it does not know, such as ``"image"`` or ``"PET"``, are not judged),
- the number of channels ``dataset.json`` names with the task's input channels,
- the labels ``dataset.json`` names with the task's classes, and
- the label values found in the files (by ``check_dataset``) with the task's classes: a class no case holds
  cannot be learnt.

Label checks apply to tasks whose labels are class indices; a task that maps label values (``[0, 255]``) or reads
instance maps has its own value check in ``check_dataset``.

Example::

    check_task_match("/data/SarcomaCT", modality="mri", in_channels=1,
                     class_names=["background", "organ", "lesion"], found_values=(0, 1))
    # TaskMismatchError: /data/SarcomaCT does not fit this bundle's task: dataset.json says modality CT, the task
    # is MRI; dataset.json names 2 labels (background, tumour), the task has 3 classes (background, organ, lesion);
    # no label holds class 2 (lesion), the values found are 0, 1. Check --dataset_dir, or pass
    # --allow_task_mismatch true to train on it anyway
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

from unet_med.data.datalist import DatasetError, channel_names_from_dataset_json, labels_from_dataset_json

__all__ = ["TaskMismatchError", "check_task_match", "modality_family", "task_mismatches"]

logger = logging.getLogger(__name__)

#: Channel names (lower case) as datasets write them, by the task modality they belong to.
MODALITY_NAMES: dict[str, frozenset[str]] = {
    "ct": frozenset("ct cta cect nect hu".split()),
    "mri": frozenset(
        "mri mr t1 t1w t2 t2w flair t1c t1ce t1gd t1post pd pdw adc dwi hbv swi dti bold cine lge mprage".split()
    ),
    "microscopy": frozenset("em tem sem sstem microscopy fluorescence brightfield dapi hoechst h&e he".split()),
}


class TaskMismatchError(DatasetError):
    """A dataset contradicts the bundle's task (modality, channels or labels)."""


def modality_family(name: str) -> str | None:
    """The task modality (``"ct"``, ``"mri"``, ``"microscopy"``) a channel name belongs to, or ``None``."""
    key = name.strip().lower()
    return next((family for family, names in MODALITY_NAMES.items() if key in names), None)


def _names(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def task_mismatches(
    dataset_dir: str | os.PathLike,
    *,
    modality: str,
    in_channels: int,
    class_names: Sequence[str],
    found_values: Sequence[int] | None = None,
    label_values: Sequence[int] | str | None = None,
) -> list[str]:
    """Every way the dataset contradicts the task, one short phrase each (empty when it fits).

    Args:
        dataset_dir: the dataset folder (its ``dataset.json``, when it has one, is read).
        modality: the task's modality (``"mri"``, ``"ct"``, ``"microscopy"``; other values are not compared).
        in_channels: the task's input channels.
        class_names: the task's classes, background first.
        found_values: the label values the files hold (as :func:`~unet_med.data.checks.check_dataset` returns).
        label_values: the task's label mapping (a list, or ``"instances"``); label checks are skipped then.

    Raises:
        DatasetError: ``dataset.json`` is malformed.
    """
    problems: list[str] = []
    channels = channel_names_from_dataset_json(dataset_dir)
    if channels:
        families = {modality_family(c) for c in channels} - {None}
        if modality in MODALITY_NAMES and families and modality not in families:
            problems.append(f"dataset.json says modality {_names(channels)}, the task is {modality.upper()}")
        if len(channels) != in_channels:
            problems.append(
                f"dataset.json names {len(channels)} channel(s) ({_names(channels)}), the task has {in_channels}"
            )
    if label_values is not None:
        return problems
    num_classes = len(class_names)
    labels = labels_from_dataset_json(dataset_dir)
    if labels and sorted(labels) != list(range(num_classes)):
        problems.append(
            f"dataset.json names {len(labels)} labels ({_names(labels.values())}), the task has {num_classes} "
            f"classes ({_names(class_names)})"
        )
    if found_values is not None:
        absent = [c for c in range(1, num_classes) if c not in set(found_values)]
        if absent:
            which = _names(f"{c} ({class_names[c]})" for c in absent)
            problems.append(
                f"no label holds class{'es' if len(absent) > 1 else ''} {which}, the values found are "
                f"{_names(found_values)}"
            )
    return problems


def check_task_match(
    dataset_dir: str | os.PathLike,
    *,
    modality: str,
    in_channels: int,
    class_names: Sequence[str],
    found_values: Sequence[int] | None = None,
    label_values: Sequence[int] | str | None = None,
    allow: bool = False,
) -> None:
    """Raises :class:`TaskMismatchError`, one line naming every mismatch, when the dataset contradicts the task.

    Takes the arguments of :func:`task_mismatches`; with ``allow`` a mismatch is logged as a warning instead.
    """
    problems = task_mismatches(
        dataset_dir,
        modality=modality,
        in_channels=in_channels,
        class_names=class_names,
        found_values=found_values,
        label_values=label_values,
    )
    if not problems:
        return
    found = f"{dataset_dir} does not fit this bundle's task: {'; '.join(problems)}"
    if allow:
        logger.warning("%s; training on it all the same (allow_task_mismatch)", found)
        return
    raise TaskMismatchError(f"{found}. Check --dataset_dir, or pass --allow_task_mismatch true to train on it anyway")
