"""Finding a user's cases on disk, splitting them, and storing the split as a MONAI-style datalist JSON.

Two layouts are recognised by :func:`load_datalist`:

- **Medical Segmentation Decathlon (MSD)**: a ``dataset.json`` whose ``"training"`` list holds
  ``{"image": ..., "label": ...}`` entries with paths relative to the dataset folder (``"./imagesTr/x.nii.gz"``).
  ``"image"`` is one file (possibly 4D, channels on the last axis) or a list of single-channel files, one per
  channel (``["./imagesTr/x_flair.nii.gz", "./imagesTr/x_t1c.nii.gz"]``).
- **Paired folders** (no ``dataset.json``, or one without a ``"training"`` list, as nnU-Net v2 writes):
  ``imagesTr/`` + ``labelsTr/``, ``images/`` + ``labels/`` or ``image/`` + ``label/``, matched by file stem. The
  nnU-Net channel suffix is understood: ``case_0000.nii.gz``, ``case_0001.nii.gz`` with label ``case.nii.gz``
  make one case whose image is the channel list. Hidden files (``.DS_Store``, macOS ``._case.nii.gz``) are skipped.

The datalist JSON written by :func:`write_datalist` has ``"training"`` and ``"validation"`` lists with paths
relative to the JSON's folder, which is what ``monai.data.load_decathlon_datalist`` expects.

Example::

    items = load_datalist("/data/Task04_Hippocampus")  # [{"image": "/data/.../hippocampus_001.nii.gz", ...}, ...]
    training, validation = split_datalist(items, val_fraction=0.2, seed=0)
    write_datalist("/data/Task04_Hippocampus/datalist.json", training, validation, num_classes=3)
    datalist = read_datalist("/data/Task04_Hippocampus/datalist.json")  # absolute paths again
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unet_med.data.readers import image_suffix
from unet_med.utils.errors import UsageError
from unet_med.utils.io import atomic_write_json

__all__ = [
    "DatasetError",
    "channel_names_from_dataset_json",
    "labels_from_dataset_json",
    "load_datalist",
    "read_datalist",
    "split_datalist",
    "write_datalist",
]

logger = logging.getLogger(__name__)

PAIRED_FOLDERS: tuple[tuple[str, str], ...] = (("imagesTr", "labelsTr"), ("images", "labels"), ("image", "label"))
"""(images, labels) folder names tried, in order, when there is no MSD ``dataset.json``."""

CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_MAX_NAMES = 10  # file names listed in one error message before "... and N more"


class DatasetError(UsageError, ValueError):
    """A dataset folder or datalist cannot be used as it is; the message says which files and why.

    Attributes:
        problems: for errors raised by :func:`unet_med.data.checks.check_dataset`, the problems found per case,
            keyed by the case's index in the checked list; empty otherwise.
    """

    def __init__(self, message: str, problems: dict[int, list[str]] | None = None) -> None:
        super().__init__(message)
        self.problems: dict[int, list[str]] = dict(problems or {})


def load_datalist(
    dataset_dir: str | os.PathLike, image_key: str = "image", label_key: str = "label"
) -> list[dict[str, Any]]:
    """Lists the labelled cases of an MSD or paired-folder dataset with absolute paths.

    Args:
        dataset_dir: the dataset folder (holding ``dataset.json`` and/or the image and label folders).
        image_key: key of the image path(s), in ``dataset.json`` entries and in the returned dicts.
        label_key: key of the label path, likewise.

    Returns:
        One dict per case, ``{image_key: str | list[str], label_key: str}`` (plus any other keys of the MSD
        entry), paths absolute and normalised. A multi-channel case given as separate files has a list of paths,
        one per channel, in channel order. Paired-folder cases are sorted by name; MSD keeps its listed order.

    Raises:
        DatasetError: the folder is missing or empty, its layout is not recognised, ``dataset.json`` is malformed,
            or images have no label (all of them are named).
    """
    root = Path(dataset_dir).expanduser().absolute()
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is not a folder: {root}")
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DatasetError(f"dataset folder is empty: {root}")
    meta = _read_dataset_json(root)
    if meta is not None and "training" in meta:
        return _msd_items(root, meta["training"], image_key, label_key)
    return _paired_items(root, image_key, label_key)


def split_datalist(
    items: Sequence[dict[str, Any]], num_val: int | None = None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Splits cases into training and validation by a seeded shuffle; the same inputs give the same split.

    Args:
        items: the cases (for example from :func:`load_datalist`).
        num_val: number of validation cases; when ``None``, ``round(len(items) * val_fraction)``, clipped so that
            both parts hold at least one case.
        val_fraction: validation share used when ``num_val`` is ``None``, in (0, 1).
        seed: seed of the shuffle.

    Returns:
        ``(training, validation)``, each in the order the cases had in ``items`` (shallow copies of the dicts).

    Raises:
        DatasetError: fewer than 2 cases.
        ValueError: ``num_val`` outside ``1..len(items) - 1`` or ``val_fraction`` outside (0, 1).
    """
    n = len(items)
    if n < 2:
        raise DatasetError(f"need at least 2 cases to split into training and validation, got {n}")
    if num_val is None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        num_val = min(max(round(n * val_fraction), 1), n - 1)
    elif not 1 <= num_val <= n - 1:
        raise ValueError(f"num_val must be in 1..{n - 1} for {n} cases, got {num_val}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:num_val])
    training = [dict(item) for i, item in enumerate(items) if i not in val_idx]
    validation = [dict(item) for i, item in enumerate(items) if i in val_idx]
    return training, validation


def write_datalist(
    path: str | os.PathLike,
    training: Sequence[dict[str, Any]],
    validation: Sequence[dict[str, Any]],
    *,
    path_keys: Sequence[str] = ("image", "label"),
    **extra: Any,
) -> Path:
    """Writes ``{"training": [...], "validation": [...], **extra}`` as JSON, atomically.

    Paths (the values under ``path_keys``, a string or a list of strings) are made absolute (relative ones are
    taken from the current directory) and then stored relative to the JSON's folder when they lie under it, so the
    dataset folder can move with its datalist; paths elsewhere stay absolute.

    Args:
        path: the JSON file to write.
        training: training cases.
        validation: validation cases.
        path_keys: item keys whose values are file paths.
        **extra: further top-level JSON entries (for example ``num_classes=3`` or ``labels={...}``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path).expanduser().absolute()
    base = path.parent

    def rel(p: str) -> str:
        full = Path(os.path.normpath(Path(p).expanduser().absolute()))
        return full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)

    doc = {
        "training": [_map_paths(item, path_keys, rel) for item in training],
        "validation": [_map_paths(item, path_keys, rel) for item in validation],
        **extra,
    }
    return atomic_write_json(path, doc)


def read_datalist(
    path: str | os.PathLike, base_dir: str | os.PathLike | None = None, *, path_keys: Sequence[str] = ("image", "label")
) -> dict[str, Any]:
    """Reads a datalist JSON and resolves relative paths against ``base_dir`` (default: the JSON's folder).

    Args:
        path: the datalist JSON (as written by :func:`write_datalist`, or any MONAI/MSD-style datalist).
        base_dir: folder relative paths are resolved against; defaults to the JSON's folder.
        path_keys: item keys whose values are file paths.

    Returns:
        The whole JSON document; in every top-level list of dicts (``"training"``, ``"validation"``, ...) the
        values under ``path_keys`` are absolute, normalised paths.

    Raises:
        DatasetError: the file is missing, not valid JSON, not an object, or has no ``"training"`` list.
    """
    path = Path(path).expanduser().absolute()
    doc = _load_json(path)
    if not isinstance(doc.get("training"), list):
        raise DatasetError(f"{path}: no 'training' list in the datalist")
    base = Path(base_dir).expanduser().absolute() if base_dir is not None else path.parent

    def resolve(p: str) -> str:
        return os.path.normpath(base / Path(p).expanduser())

    for key, section in doc.items():
        if isinstance(section, list) and all(isinstance(item, dict) for item in section):
            doc[key] = [_map_paths(item, path_keys, resolve) for item in section]
    return doc


def labels_from_dataset_json(dataset_dir: str | os.PathLike) -> dict[int, str] | None:
    """Class index -> name from a dataset's ``dataset.json`` (MSD or nnU-Net v2 style).

    MSD writes ``{"0": "background", "1": "Anterior"}``; nnU-Net v2 writes ``{"background": 0, "Anterior": 1}``.
    Both give ``{0: "background", 1: "Anterior"}``.

    Args:
        dataset_dir: the dataset folder, or the ``dataset.json`` file itself.

    Returns:
        The mapping sorted by index, or ``None`` when there is no ``dataset.json`` or it has no ``"labels"``.

    Raises:
        DatasetError: the file is malformed, or uses nnU-Net region labels (a list of indices per name).
    """
    found = _dataset_json_entry(dataset_dir, "labels")
    if found is None:
        return None
    file, labels = found
    try:
        if all(isinstance(v, str) for v in labels.values()):  # MSD: index -> name
            mapping = {int(k): v for k, v in labels.items()}
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):  # nnU-Net v2: name -> index
            mapping = {v: k for k, v in labels.items()}
        else:
            raise ValueError("expected index -> name or name -> index (nnU-Net region labels are not supported)")
    except ValueError as exc:
        raise DatasetError(f"{file}: cannot read 'labels' {labels}: {exc}") from exc
    return dict(sorted(mapping.items()))


def channel_names_from_dataset_json(dataset_dir: str | os.PathLike) -> list[str] | None:
    """Input channel names in channel order, from ``"modality"`` (MSD) or ``"channel_names"`` (nnU-Net v2).

    Args:
        dataset_dir: the dataset folder, or the ``dataset.json`` file itself.

    Returns:
        For example ``["FLAIR", "T1c"]``; ``None`` when there is no ``dataset.json`` or neither key is present.

    Raises:
        DatasetError: the entry is malformed or its indices are not ``0..n-1``.
    """
    found = _dataset_json_entry(dataset_dir, "modality", "channel_names")
    if found is None:
        return None
    file, names = found
    try:
        by_index = {int(k): str(v) for k, v in names.items()}
    except ValueError as exc:
        raise DatasetError(f"{file}: channel indices must be integers, got {list(names)}") from exc
    if sorted(by_index) != list(range(len(by_index))):
        raise DatasetError(f"{file}: channel indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
    return [by_index[i] for i in range(len(by_index))]


# ----------------------------------------------------------------------------------------------------------------


def _load_json(file: Path) -> dict[str, Any]:
    """Reads a JSON object, turning every failure into a :class:`DatasetError` naming the file."""
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise DatasetError(f"file not found: {file}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{file}: cannot read JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetError(f"{file}: expected a JSON object at the top level, got {type(doc).__name__}")
    return doc


def _read_dataset_json(root: Path) -> dict[str, Any] | None:
    file = root / "dataset.json"
    return _load_json(file) if file.is_file() else None


def _dataset_json_entry(dataset_dir: str | os.PathLike, *keys: str) -> tuple[Path, dict[str, Any]] | None:
    """``(file, value)`` of the first of ``keys`` present in dataset.json, or ``None``; the value must be a dict."""
    path = Path(dataset_dir).expanduser().absolute()
    file = path if path.is_file() else path / "dataset.json"
    if not file.is_file():
        return None
    doc = _load_json(file)
    for key in keys:
        if key in doc:
            if not isinstance(doc[key], dict):
                raise DatasetError(f"{file}: '{key}' must be an object, got {type(doc[key]).__name__}")
            return file, doc[key]
    return None


def _map_paths(item: dict[str, Any], keys: Sequence[str], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``item`` with ``fn`` applied to each path (or each path of a list) under ``keys``."""
    out = dict(item)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = fn(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = [fn(v) for v in value]
    return out


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES])
    return shown + (f" ... and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else "")


def _msd_items(root: Path, training: Any, image_key: str, label_key: str) -> list[dict[str, Any]]:
    """Validates and resolves the ``"training"`` entries of an MSD ``dataset.json``."""
    file = root / "dataset.json"
    if not isinstance(training, list):
        raise DatasetError(f"{file}: 'training' must be a list, got {type(training).__name__}")
    if not training:
        raise DatasetError(f"{file}: the 'training' list is empty")

    def resolve(p: str) -> str:
        return os.path.normpath(root / Path(p).expanduser())

    items: list[dict[str, Any]] = []
    bad: list[str] = []
    unlabelled: list[str] = []
    for i, entry in enumerate(training):
        image = entry.get(image_key) if isinstance(entry, dict) else None
        if isinstance(image, list) and image and all(isinstance(p, str) for p in image):
            first = image[0]
        elif isinstance(image, str):
            first = image
        else:
            bad.append(f"training[{i}] = {entry!r}")
            continue
        if not isinstance(entry.get(label_key), str):
            unlabelled.append(first)
            continue
        items.append(_map_paths(entry, (image_key, label_key), resolve))
    if bad:
        raise DatasetError(
            f"{file}: {len(bad)} 'training' entries have no '{image_key}' path or path list: {_names(bad)}"
        )
    if unlabelled:
        raise DatasetError(f"{file}: {len(unlabelled)} images have no '{label_key}': {_names(unlabelled)}")
    return items


def _image_files(folder: Path) -> dict[str, Path]:
    """Stem -> file for the visible image files in ``folder``; two files with one stem are an error."""
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        suffix = image_suffix(p)
        if p.name.startswith(".") or suffix is None or not p.is_file():
            continue
        stem = p.name[: -len(suffix)]
        if stem in files:
            raise DatasetError(f"{folder}: two files for case '{stem}': {files[stem].name} and {p.name}")
        files[stem] = p
    return files


def _paired_items(root: Path, image_key: str, label_key: str) -> list[dict[str, Any]]:
    """Matches ``imagesTr/`` (or ``images/``, ``image/``) files to ``labelsTr/`` files by stem."""
    pair = next(((root / i, root / lab) for i, lab in PAIRED_FOLDERS if (root / i).is_dir()), None)
    if pair is None:
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        expected = " or ".join(f"{i}/ + {lab}/" for i, lab in PAIRED_FOLDERS)
        raise DatasetError(
            f"{root}: unrecognised dataset layout: expected an MSD dataset.json with a 'training' list, or {expected}; "
            f"found {_names(found)}"
        )
    image_dir, label_dir = pair
    if not label_dir.is_dir():
        raise DatasetError(f"{root}: found {image_dir.name}/ but no {label_dir.name}/ folder with the labels")
    images, labels = _image_files(image_dir), _image_files(label_dir)
    if not images:
        raise DatasetError(f"{image_dir}: no image files (supported: .nii.gz, .nii, .nrrd, .mha, .png, .tif, ...)")

    # Group channel files: "case_0001" is channel 1 of "case" when the label is "case" (not "case_0001").
    cases: dict[str, dict[int, Path]] = {}
    for stem, file in images.items():
        match = CHANNEL_SUFFIX.match(stem)
        if match and stem not in labels and match["case"] in labels:
            cases.setdefault(match["case"], {})[int(match["channel"])] = file
        elif match and stem not in labels and match["case"] not in labels and match["channel"] == "0000":
            cases.setdefault(match["case"], {})[0] = file  # unlabelled nnU-Net case: reported below by case name
        else:
            cases.setdefault(stem, {})[0] = file

    unlabelled = sorted(str(files[min(files)]) for case, files in cases.items() if case not in labels)
    if unlabelled:
        raise DatasetError(
            f"{root}: {len(unlabelled)} images have no label in {label_dir.name}/ (matched by file name): "
            f"{_names(unlabelled)}"
        )
    gaps = [f"{case} has channels {sorted(ch)}" for case, ch in cases.items() if sorted(ch) != list(range(len(ch)))]
    if gaps:
        raise DatasetError(f"{image_dir}: channel files must be numbered _0000, _0001, ...: {_names(gaps)}")
    orphans = sorted(set(labels) - set(cases))
    if orphans:
        logger.warning("%s: %d labels have no image and are ignored: %s", label_dir, len(orphans), _names(orphans))

    items = []
    for case in sorted(cases):
        files = [str(cases[case][c]) for c in range(len(cases[case]))]
        items.append({image_key: files[0] if len(files) == 1 else files, label_key: str(labels[case])})
    return items
