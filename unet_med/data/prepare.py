"""The datalists a bundle trains, validates and infers on, checked before any work starts."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unet_med.data.checks import check_dataset
from unet_med.data.datalist import (
    CHANNEL_SUFFIX,
    DatasetError,
    load_datalist,
    read_datalist,
    split_datalist,
    write_datalist,
)
from unet_med.data.folds import fold_split
from unet_med.data.readers import image_suffix
from unet_med.data.synthetic import make_demo_dataset_3d
from unet_med.data.task_match import check_task_match
from unet_med.utils import is_distributed, is_rank_zero

__all__ = ["find_images", "inference_datalist", "prepare_datalist", "require_cases"]

logger = logging.getLogger(__name__)


def prepare_datalist(
    dataset_dir: str | os.PathLike | None,
    num_classes: int,
    in_channels: int,
    cache_dir: str | os.PathLike = ".cache",
    datalist_file: str | os.PathLike | None = None,
    num_val: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    spatial_dims: int = 3,
    check: bool = True,
    save_to: str | os.PathLike | None = None,
    demo: dict[str, Any] | None = None,
    allow_demo: bool = True,
    label_values: list[int] | str | None = None,
    fold: int | None = None,
    num_folds: int = 5,
    fold_blocks: bool = False,
    modality: str | None = None,
    class_names: Sequence[str] | None = None,
    allow_task_mismatch: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Finds the cases, splits them, checks every file, and returns ``{"training": [...], "validation": [...]}``.

    Args:
        dataset_dir: an MSD folder (``dataset.json`` + ``imagesTr``/``labelsTr``) or paired image/label folders.
            ``None`` or ``""`` means the synthetic demo set, generated into ``cache_dir/demo3d`` (never
            downloaded). A folder that is given must exist and hold data.
        num_classes: classes including background; label values must lie in ``0..num_classes-1``.
        in_channels: image channels every case must have.
        cache_dir: where the demo set is generated.
        datalist_file: a datalist JSON with ``training``/``validation`` lists (paths relative to the file or to
            ``dataset_dir``) for a fixed split; otherwise a seeded split of ``dataset_dir``.
        num_val: validation cases for the seeded split (default ``val_fraction`` of the cases).
        val_fraction: validation share when ``num_val`` is ``None``.
        seed: seed of the split.
        spatial_dims: 2 or 3, the dimensionality every image must have.
        check: check every file before returning (see :func:`unet_med.data.checks.check_dataset`).
        save_to: write the split used to this JSON (atomically) so the run can be reproduced.
        demo: keyword arguments for :func:`unet_med.data.synthetic.make_demo_dataset_3d`.
        allow_demo: whether a missing ``dataset_dir`` falls back to the demo set; task bundles trained on real
            data say ``False``, so forgetting ``--dataset_dir`` is an error rather than a run on phantoms.
        label_values: what the label files hold when they are not class indices: a list of allowed values
            (``[0, 255]``) or ``"instances"`` (see :func:`~unet_med.data.checks.check_dataset`).
        fold: train on fold ``fold`` of a seeded ``num_folds``-fold split by case, stratified on each case's label
            values (:func:`unet_med.data.folds.fold_split`), drawn over every case of ``dataset_dir`` or, with a
            ``datalist_file``, over the union of its training and validation cases. ``None``: the ordinary split.
        num_folds: number of cross-validation folds (with ``fold``).
        fold_blocks: the folds are contiguous blocks of the cases in their order (serial sections), not a
            seeded stratified draw (with ``fold``).
        modality: the task's modality; with ``class_names``, a dataset of one's own is compared with the task
            (:func:`unet_med.data.task_match.check_task_match`: modality, channels and labels in ``dataset.json``,
            label values in the files) after its files are checked.
        class_names: the task's classes, background first; ``None`` skips the comparison with the task.
        allow_task_mismatch: train on a dataset that contradicts the task all the same (logged as a warning).

    Raises:
        unet_med.data.datalist.DatasetError: one error listing every missing, unreadable or inconsistent file.
        unet_med.data.task_match.TaskMismatchError: the dataset contradicts the task (one line naming how).
    """
    if dataset_dir in (None, "") and not allow_demo:
        raise DatasetError("no dataset_dir given: this bundle trains on real data; pass --dataset_dir DIR")
    own_data = dataset_dir not in (None, "")  # not the demo set, so it is compared with the task
    if dataset_dir in (None, ""):
        root = Path(cache_dir) / "demo3d"
        kwargs = {"num_classes": num_classes, **(demo or {})}
        # One rank writes the demo set; the others wait for it (the writer is atomic and idempotent).
        if is_rank_zero():
            logger.info("no dataset_dir given: using the synthetic demo set in %s", root)
            make_demo_dataset_3d(root, **kwargs)
        if is_distributed():
            torch.distributed.barrier()
        dataset_dir = root
    extra: dict[str, Any] = {}
    if fold is not None:
        if datalist_file:
            datalist = read_datalist(datalist_file, base_dir=dataset_dir)
            items = datalist["training"] + datalist.get("validation", [])
        else:
            items = load_datalist(dataset_dir)
        instances = label_values == "instances"
        training, validation = fold_split(items, fold, num_folds, seed=seed, instances=instances, blocks=fold_blocks)
        extra = {"fold": fold, "num_folds": num_folds, "seed": seed, "fold_blocks": bool(fold_blocks)}
    elif datalist_file:
        datalist = read_datalist(datalist_file, base_dir=dataset_dir)
        training, validation = datalist["training"], datalist["validation"]
    else:
        training, validation = split_datalist(
            load_datalist(dataset_dir), num_val=num_val, val_fraction=val_fraction, seed=seed
        )
    if check:
        found = check_dataset(
            training + validation,
            num_classes=num_classes,
            in_channels=in_channels,
            spatial_dims=spatial_dims,
            label_values=label_values,
        )
        if own_data and class_names is not None:
            check_task_match(
                str(dataset_dir),
                modality=modality or "",
                in_channels=in_channels,
                class_names=class_names,
                found_values=found,
                label_values=label_values,
                allow=allow_task_mismatch,
            )
    if save_to and is_rank_zero():
        write_datalist(save_to, training, validation, dataset_dir=str(Path(dataset_dir).absolute()), **extra)
    logger.info("%d training and %d validation cases from %s", len(training), len(validation), dataset_dir)
    return {"training": training, "validation": validation}


def find_images(path: str | os.PathLike, image_key: str = "image", num_channels: int = 1) -> list[dict[str, Any]]:
    """Lists the cases to run inference on: the file ``path``, or every image (case) in the folder ``path``.

    With ``num_channels > 1``, files named with nnU-Net's channel suffix (``case_0000.nii.gz``,
    ``case_0001.nii.gz``) are grouped into one case with a list of per-channel paths; a file without the suffix
    (for example a 4D NIfTI holding every channel) is a case of its own.

    Returns:
        ``[{image_key: absolute path or list of per-channel paths}, ...]`` sorted by name; hidden files skipped.

    Raises:
        DatasetError: ``path`` does not exist, the folder holds no image file, or a case's channel files are not
            numbered ``_0000`` .. ``num_channels - 1``.
    """
    path = Path(path).expanduser().absolute()
    if path.is_file():
        return [{image_key: str(path)}]
    if not path.is_dir():
        raise DatasetError(f"input not found: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and image_suffix(p))
    if not files:
        series = _dicom_series_folders(path)
        if series:
            return [{image_key: str(p)} for p in series]
        raise DatasetError(f"no image files (.nii, .nii.gz, .nrrd, .mha, .png, .tif) or DICOM series in {path}")
    if num_channels == 1:
        return [{image_key: str(p)} for p in files]
    cases: dict[str, dict[int, str]] = {}
    for p in files:
        stem = p.name[: -len(image_suffix(p) or "")]
        match = CHANNEL_SUFFIX.match(stem)
        case, channel = (match["case"], int(match["channel"])) if match else (stem, -1)
        cases.setdefault(case, {})[channel] = str(p)
    items: list[dict[str, Any]] = []
    bad = []
    for case, channels in sorted(cases.items()):
        if list(channels) == [-1]:
            items.append({image_key: channels[-1]})
        elif sorted(channels) == list(range(num_channels)):
            items.append({image_key: [channels[c] for c in range(num_channels)]})
        else:
            bad.append(f"{case} has channel files {sorted(channels)}")
    if bad:
        raise DatasetError(f"{path}: expected channel files _0000.._{num_channels - 1:04d} per case: {'; '.join(bad)}")
    return items


def _dicom_series_folders(path: Path) -> list[Path]:
    """``[path]`` when the folder holds DICOM images, else its subfolders that do (one case per series folder)."""
    from unet_med.dicom.series import list_series

    if list_series(path):
        return [path]
    return [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".") and list_series(p)]


def inference_datalist(
    input: str | os.PathLike | None = None,
    dataset_dir: str | os.PathLike | None = None,
    num_channels: int = 1,
    image_key: str = "image",
) -> list[dict[str, Any]]:
    """The cases a bundle's ``inference.json`` runs on: ``input`` (a file or folder), else ``dataset_dir``.

    ``dataset_dir`` is read as in MONAI model-zoo bundles: an MSD folder's ``imagesTs/`` when it has one (else
    ``imagesTr/``, ``images/`` or ``image/``), else the folder's own images. See :func:`find_images` for channel
    files and ordering. With neither given the list is empty (so tools can build the workflow without data);
    :func:`require_cases` stops a run on it.

    Raises:
        DatasetError: the path given does not exist or holds no image.
    """
    if input not in (None, ""):
        return find_images(str(input), image_key=image_key, num_channels=num_channels)
    if dataset_dir in (None, ""):
        return []
    folder = Path(str(dataset_dir))
    for sub in ("imagesTs", "imagesTr", "images", "image"):
        if (folder / sub).is_dir():
            folder = folder / sub
            break
    return find_images(folder, image_key=image_key, num_channels=num_channels)


def require_cases(datalist: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns ``datalist`` when it holds cases, else raises the error a run without input deserves."""
    if not datalist:
        raise DatasetError("nothing to run on: pass --input FILE_OR_FOLDER (or --dataset_dir FOLDER)")
    return datalist
