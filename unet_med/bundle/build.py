"""Making, regenerating and checking bundle folders from their task descriptions.

- :func:`new_bundle`: a new bundle folder from a task description (``unet-med bundle new``).
- :func:`build_bundle`: rewrites ``configs/`` from ``configs/task.json`` (``unet-med bundle build``).
- :func:`check_bundle`: what differs between ``configs/`` and what the template makes (``build --check``; the
  test suite keeps every shipped bundle at zero differences).
- :func:`record_fingerprint`: measures the training images and keeps their fingerprint in ``configs/task.json``
  (``unet-med bundle fingerprint``), for ``unet-med predict``'s input check.

Example::

    new_bundle("my_task.json", "bundles/liver_ct")
    build_bundle("bundles/liver_ct")      # after editing bundles/liver_ct/configs/task.json
    check_bundle("bundles/liver_ct")      # [] when every config is what the template makes
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unet_med.bundle.task import TASK_FILE, load_task, validate_task
from unet_med.bundle.template import config_text, render
from unet_med.utils.io import atomic_path

__all__ = ["build_bundle", "check_bundle", "new_bundle", "record_fingerprint", "task_from_plan"]


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def build_bundle(bundle_dir: str | os.PathLike) -> list[Path]:
    """Rewrites every template file of ``configs/`` from ``configs/task.json``; returns the files that changed.

    Raises:
        unet_med.bundle.task.TaskError: the task description is missing or invalid (nothing is written).
    """
    root = Path(bundle_dir)
    files = render(load_task(root))
    changed = []
    for name, text in files.items():
        path = root / "configs" / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            _write_text(path, text)
            changed.append(path)
    return changed


def record_fingerprint(bundle_dir: str | os.PathLike, dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Sets ``fingerprint`` of ``configs/task.json`` to the training images of ``dataset_dir``; nothing else changes.

    The fingerprint is data for the input check of ``unet-med predict`` and is not rendered into any config, so
    the bundle's configs (and its recognition) stay as they are.

    Returns:
        The fingerprint written (:func:`unet_med.data.fingerprint.input_fingerprint`).

    Raises:
        unet_med.bundle.task.TaskError: the task is invalid, or the dataset's channels are not the task's.
        unet_med.data.datalist.DatasetError: the dataset folder has no recognised layout.
    """
    from unet_med.data.fingerprint import input_fingerprint

    path = Path(bundle_dir) / TASK_FILE
    task = load_task(path)
    task["fingerprint"] = input_fingerprint(dataset_dir, spatial_dims=task["spatial_dims"])
    validate_task(task, source=f"{path} with the fingerprint of {dataset_dir}")
    _write_text(path, json.dumps(task, indent=4, ensure_ascii=False) + "\n")
    return task["fingerprint"]


def check_bundle(bundle_dir: str | os.PathLike) -> list[str]:
    """Every place where ``configs/`` differs from what the template makes from ``configs/task.json``.

    Returns:
        ``[]`` when every template file is byte-equal to the template's; else one line per file that is missing
        or differs, naming the first differing top-level id for JSON configs.

    Raises:
        unet_med.bundle.task.TaskError: the task description is missing or invalid.
    """
    root = Path(bundle_dir)
    problems = []
    for name, text in render(load_task(root)).items():
        path = root / "configs" / name
        if not path.is_file():
            problems.append(f"configs/{name}: missing")
            continue
        actual = path.read_text(encoding="utf-8", errors="replace")
        if actual != text:
            problems.append(f"configs/{name}: differs from the template ({_first_difference(actual, text)})")
    return problems


def _first_difference(actual: str, expected: str) -> str:
    try:
        a, e = json.loads(actual), json.loads(expected)
    except ValueError:
        return "not the template's text"
    if not isinstance(a, dict):
        return "not a JSON object"
    for key in list(e) + [k for k in a if k not in e]:
        if key not in a:
            return f"'{key}' missing"
        if key not in e:
            return f"'{key}' is not in the template"
        if a[key] != e[key]:
            return f"'{key}' differs"
    return "formatting differs"


def new_bundle(task: dict[str, Any] | str | os.PathLike, bundle_dir: str | os.PathLike) -> Path:
    """Creates a bundle folder: ``configs/`` from the template, ``configs/task.json``, a model-card stub and a
    licence stub to fill in. Refuses an existing non-empty folder.

    Args:
        task: a task description, or the path of a JSON file holding one.
        bundle_dir: the folder to create.
    """
    if not isinstance(task, dict):
        source = str(task)
        task = json.loads(Path(task).read_text(encoding="utf-8"))
    else:
        source = "task"
    task = validate_task(task, source=source)
    root = Path(bundle_dir)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists and is not empty")
    files = render(task)
    _write_text(root / TASK_FILE, config_text(task))
    for name, text in files.items():
        _write_text(root / "configs" / name, text)
    (root / "models").mkdir(parents=True, exist_ok=True)
    card = task["card"]
    _write_text(
        root / "docs" / "README.md",
        f"# {card['name']}\n\n{card['description']}\n\n"
        "## Training\n\nTrain with `python -m monai.bundle run training --config_file configs/train.json "
        "--dataset_dir DATA`.\n",
    )
    _write_text(root / "LICENSE", "State the licence of these weights and of the data they were trained on.\n")
    return root


def task_from_plan(plan: dict[str, Any], name: str = "unet_med bundle") -> dict[str, Any]:
    """A task description from :func:`unet_med.data.planning.plan_from_fingerprint`'s proposal."""
    modality = plan["modality"]
    preprocessing: dict[str, Any] = {"pixdim": plan["pixdim"]}
    ct_window = plan.get("preprocessing#ct_window")
    if modality == "ct" and ct_window is not None:
        preprocessing["ct_window"] = ct_window
    task = {
        "format": 1,
        "spatial_dims": len(plan["patch_size"]),
        "modality": modality,
        "channels": plan.get("channel_names") or [f"channel {i}" for i in range(plan["in_channels"])],
        "classes": plan["class_names"],
        "preprocessing": preprocessing,
        "network": {"features": plan["features"], "pool_sizes": plan["network_def#pool_sizes"]},
        "patch_size": plan["patch_size"],
        "training": {"datalist": False},
        "card": {
            "name": name,
            "version": "0.1.0",
            "changelog": {"0.1.0": "First version, settings planned from the dataset fingerprint."},
            "task": "Segmentation",
            "description": "A classic U-Net with settings proposed by unet-med plan from the dataset fingerprint.",
        },
    }
    return validate_task(task, source="plan")
