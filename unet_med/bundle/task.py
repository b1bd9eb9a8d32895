"""The task description: the data-only input from which :mod:`unet_med.bundle.template` makes a bundle's configs.

A bundle's ``configs/task.json`` holds numbers, names from known sets, and short texts for the model card;
nothing in it is code. It is checked against :data:`TASK_SCHEMA` (JSON Schema, draft 2020-12) before anything else
reads it, and names and texts may not start with the characters MONAI's config parser gives a meaning to
(``$`` expression, ``@`` reference, ``%`` macro) nor hold ``#`` (MONAI's id separator), so no value in a task
can become code once the template places it into a config.

An optional ``fingerprint`` keeps what the training images looked like (case count, channels, spacing and field of
view ranges, intensity percentile ranges per channel; written by ``unet-med bundle fingerprint``). The template
does not render it into any config; ``unet-med predict`` checks every input against it
(:mod:`unet_med.inference.input_check`).

Example (the reference bundle's task, abridged)::

    {
        "format": 1,
        "spatial_dims": 3, "modality": "mri", "channels": ["image"],
        "classes": ["background", "organ", "lesion"],
        "preprocessing": {"pixdim": [1.2, 1.2, 2.5]},
        "network": {"features": [16, 32, 64, 128]},
        "patch_size": [48, 48, 32],
        "training": {"max_epochs": 24, "demo": {"num_cases": 24, "shape": [64, 64, 48], "spacing": [1.2, 1.2, 2.5]}},
        "card": {"name": "unet_med reference U-Net", ...}
    }
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["BOUNDS", "TASK_FILE", "TASK_FORMAT", "TASK_SCHEMA", "TaskError", "load_task", "validate_task"]

#: Where a bundle keeps its task description.
TASK_FILE = "configs/task.json"
#: The version of the task description format this template reads.
TASK_FORMAT = 1
#: Largest task file read (a task is a few kB).
MAX_TASK_BYTES = 256 << 10

# Names (classes, channels, regions) and card texts: no leading $ @ %, no '#', no control characters.
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9 _().,+\-/]{0,63}$"}
_TEXT = {"type": "string", "pattern": r"^[^$@%#\x00-\x1f][^#\x00-\x1f]{0,1999}$"}
_POS_INT = {"type": "integer", "minimum": 1}
_POS_NUM = {"type": "number", "exclusiveMinimum": 0}
_SPACING = {"type": "array", "items": _POS_NUM, "minItems": 2, "maxItems": 3}

#: Plausible bounds: a value outside is a schema error naming the field, the value and the bound. Each keeps a
#: received task from asking for absurd memory or time; docs/memory.md ("Bounds") gives the reason for each.
BOUNDS: dict[str, tuple[float, float]] = {
    "network.features[]": (1, 1024),
    "patch_size[] (3D)": (1, 256),
    "patch_size[] (2D)": (1, 2048),
    "pixdim[] (mm; CT, MRI)": (0.1, 20.0),
    "pixdim[] (microscopy, the image's unit)": (0.001, 1000.0),
    "training.max_epochs": (1, 10000),
    "training.val_interval": (1, 10000),
    "training.batch_size": (1, 64),
    "training.num_samples": (1, 32),
    "training.val_sw_batch_size": (1, 64),
    "training.learning_rate": (0, 1.0),
    "training.warmup_epochs": (0, 1000),
    "training.demo.shape[]": (1, 256),
}


def _int(name: str) -> dict[str, Any]:
    low, high = BOUNDS[name]
    return {"type": "integer", "minimum": int(low), "maximum": int(high)}


def _range(name: str) -> dict[str, float]:
    low, high = BOUNDS[name]
    return {"minimum": low, "maximum": high}


_SIZES = {"type": "array", "items": _int("patch_size[] (2D)"), "minItems": 2, "maxItems": 3}
_VERSION = {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"}
_RANGE = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
# A coded concept (DICOM code sequence item): scheme designator (SH), code value, code meaning (LO, 64 characters).
_CODE_TEXT = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,15}$"}
_MEANING = {"type": "string", "pattern": r"^[^$@%#\x00-\x1f][^#\x00-\x1f]{0,63}$"}


_CODE_KEYS = ("scheme", "value", "meaning")


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _fingerprint_schema() -> dict[str, Any]:
    """The training images' fingerprint (:func:`unet_med.data.fingerprint.input_fingerprint`): data only."""
    axes = _obj({"min": _SPACING, "max": _SPACING}, ("min", "max"))
    stats = ("p00_5", "p50", "p99_5", "median_position")
    channel = _obj(dict.fromkeys(stats, _RANGE), stats)
    return _obj(
        {
            "num_cases": _POS_INT,
            "channels": {"type": "integer", "minimum": 1, "maximum": 16},
            "spacing": axes,
            "extent": axes,
            "intensity": {"type": "array", "items": channel, "minItems": 1, "maxItems": 16},
        },
        ("num_cases", "channels", "intensity"),
    )


def _when(condition: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """A bound that holds for some tasks only (by dimensions or modality)."""
    return {"if": {"properties": condition, "required": list(condition)}, "then": {"properties": then}}


def _spacings(name: str) -> dict[str, Any]:
    """The spacing bounds of one modality, for ``preprocessing.pixdim`` and ``training.demo.spacing``."""
    spacing = {"items": _range(name)}  # "items" leaves a null pixdim alone
    return {
        "preprocessing": {"properties": {"pixdim": spacing}},
        "training": {"properties": {"demo": {"properties": {"spacing": spacing}}}},
    }


#: The JSON Schema of a task description. Every object is closed (``additionalProperties: false``).
TASK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "unet_med task description",
    **_obj(
        {
            "format": {"const": TASK_FORMAT},
            "spatial_dims": {"enum": [2, 3]},
            "modality": {"enum": ["mri", "ct", "microscopy"]},
            "channels": {"type": "array", "items": _NAME, "minItems": 1, "maxItems": 16},
            "classes": {"type": "array", "items": _NAME, "minItems": 2, "maxItems": 255},
            "preprocessing": _obj(
                {
                    "pixdim": {"oneOf": [_SPACING, {"type": "null"}]},
                    "orientation": {"enum": ["RAS", "LPS", None]},
                    "mri_foreground": {"enum": ["nonzero", "above_min"]},
                    "ct_window": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                }
            ),
            "labels": _obj(
                {
                    "kind": {"enum": ["classes", "values", "instances"]},
                    "values": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 255},
                    "map_to": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 255},
                    "boundary_width": {"type": "integer", "minimum": 1, "maximum": 8},
                },
                ("kind",),
            ),
            "network": _obj(
                {
                    "features": {"type": "array", "items": _int("network.features[]"), "minItems": 2, "maxItems": 6},
                    "norm": {"enum": ["instance", "batch", None]},
                    "pool_sizes": {
                        "type": "array",
                        "items": {"type": "array", "items": {"enum": [1, 2]}, "minItems": 2, "maxItems": 3},
                        "maxItems": 5,
                    },
                    "dropout": {"type": "number", "minimum": 0, "maximum": 0.9},
                    "deep_supervision": {"type": "boolean"},
                },
                ("features",),
            ),
            "patch_size": _SIZES,
            "training": _obj(
                {
                    "max_epochs": _int("training.max_epochs"),
                    "val_interval": _int("training.val_interval"),
                    "batch_size": _int("training.batch_size"),
                    "num_samples": _int("training.num_samples"),
                    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1.0},
                    "amp": {"type": "boolean"},
                    "loss": {"enum": ["dice_ce", "ce", "border_weighted_ce"]},
                    "border_weights": _obj(
                        {
                            "border_class": {"type": "string", "minLength": 1},
                            "w0": {"type": "number", "minimum": 0},
                            "sigma": _POS_NUM,
                            "keep_class_total": {"type": "boolean"},
                        },
                        ("border_class",),
                    ),
                    "augmentation": {"enum": ["volume", "volume_strong", "microscopy"]},
                    "demo": _obj(
                        {
                            "num_cases": {"type": "integer", "minimum": 2, "maximum": 256},
                            "shape": {**_SIZES, "items": _int("training.demo.shape[]")},
                            "spacing": _SPACING,
                        },
                    ),
                    "datalist": {"type": "boolean"},
                    "num_folds": {"type": "integer", "minimum": 2, "maximum": 20},
                    "fold_blocks": {"type": "boolean"},
                    "compile": {"type": "boolean"},
                    "channels_last": {"type": "boolean"},
                    "lr_schedule": {"enum": ["cosine", "warmup_cosine"]},
                    "warmup_epochs": {"type": "number", **_range("training.warmup_epochs")},
                    "val_overlap": {"type": "number", "minimum": 0, "maximum": 0.9},
                    "val_sw_batch_size": _int("training.val_sw_batch_size"),
                }
            ),
            "inference": _obj({"ensemble": {"type": "integer", "minimum": 1, "maximum": 16}}),
            # per foreground class: what it is, as DICOM coded concepts (unet_med.dicom.codes; docs/dicom.md)
            "class_codes": {
                "type": "object",
                "propertyNames": _NAME,
                "maxProperties": 254,
                "additionalProperties": _obj(
                    {
                        "category": _obj({"scheme": _CODE_TEXT, "value": _CODE_TEXT, "meaning": _MEANING}, _CODE_KEYS),
                        "type": _obj({"scheme": _CODE_TEXT, "value": _CODE_TEXT, "meaning": _MEANING}, _CODE_KEYS),
                    },
                    ("category", "type"),
                ),
            },
            "postprocessing": _obj(
                {
                    "keep_largest_component": {"type": "array", "items": _POS_INT, "maxItems": 254},
                    "instances_min_size": {"type": "integer", "minimum": 0},
                }
            ),
            "evaluation": _obj(
                {
                    "report": {"enum": ["classes", "regions", "membranes", "instances"]},
                    "regions": {
                        "type": "array",
                        "items": _obj(
                            {"name": _NAME, "labels": {"type": "array", "items": _POS_INT}}, ("name", "labels")
                        ),
                        "maxItems": 16,
                    },
                    "surface_tolerance_mm": _POS_NUM,
                    "num_figures": {"type": "integer", "minimum": 0, "maximum": 64},
                }
            ),
            "fingerprint": _fingerprint_schema(),
            "card": _obj(
                {
                    "name": _TEXT,
                    "version": _VERSION,
                    "changelog": {"type": "object", "propertyNames": _VERSION, "additionalProperties": _TEXT},
                    "task": _TEXT,
                    "description": _TEXT,
                    "authors": _TEXT,
                    "copyright": _TEXT,
                    "data_source": _TEXT,
                    "image_classes": _TEXT,
                    "label_classes": _TEXT,
                    "pred_classes": _TEXT,
                    "intended_use": _TEXT,
                    "imaging_modality": _NAME,
                    "references": {"type": "array", "items": _TEXT, "maxItems": 32},
                    "eval_metrics": {
                        "type": "object",
                        "propertyNames": {"pattern": r"^[a-z0-9_]{1,64}$"},
                        "additionalProperties": {"type": "number"},
                    },
                },
                ("name", "version", "changelog", "task", "description"),
            ),
        },
        ("format", "spatial_dims", "modality", "channels", "classes", "network", "patch_size", "card"),
    ),
    "allOf": [
        _when({"spatial_dims": {"const": 3}}, {"patch_size": {"items": _int("patch_size[] (3D)")}}),
        _when({"modality": {"enum": ["ct", "mri"]}}, _spacings("pixdim[] (mm; CT, MRI)")),
        _when({"modality": {"const": "microscopy"}}, _spacings("pixdim[] (microscopy, the image's unit)")),
    ],
}


class TaskError(ValueError):
    """A task description that is not valid; ``problems`` lists every reason, each naming its place."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: not a valid task description" + "".join(f"\n  - {p}" for p in problems))


def default_augmentation(task: dict[str, Any]) -> str:
    """``training.augmentation`` when a task does not set it: by modality."""
    return "microscopy" if task["modality"] == "microscopy" else "volume"


def _consistency(task: dict[str, Any]) -> list[str]:
    """Checks the schema cannot express: lengths that must agree with ``spatial_dims`` and the classes."""
    dims, problems = task["spatial_dims"], []
    sizes = {"patch_size": task["patch_size"], "preprocessing.pixdim": task.get("preprocessing", {}).get("pixdim")}
    demo = task.get("training", {}).get("demo")
    if demo:
        sizes.update({"training.demo.shape": demo.get("shape"), "training.demo.spacing": demo.get("spacing")})
    for pool in task["network"].get("pool_sizes", []):
        sizes["network.pool_sizes[]"] = pool
    for where, value in sizes.items():
        if value is not None and len(value) != dims:
            problems.append(f"{where}: {value} must have {dims} entries (spatial_dims)")
    pools = task["network"].get("pool_sizes")
    if pools is not None and len(pools) != len(task["network"]["features"]) - 1:
        problems.append("network.pool_sizes: one entry per pooling, i.e. len(features) - 1")
    num_classes = len(task["classes"])
    for label in task.get("postprocessing", {}).get("keep_largest_component", []):
        if label >= num_classes:
            problems.append(f"postprocessing.keep_largest_component: label {label} >= {num_classes} classes")
    labels = task.get("labels", {})
    if labels.get("kind") == "values" and len(labels.get("values", [])) != len(labels.get("map_to", [None])):
        problems.append("labels: 'values' and 'map_to' must have the same length")
    if labels.get("kind") == "instances" and num_classes != 3:
        problems.append("labels.kind 'instances' needs 3 classes (background, interior, boundary)")
    training = task.get("training", {})
    if training.get("loss") == "border_weighted_ce":
        weights = training.get("border_weights")
        if training.get("augmentation", default_augmentation(task)) != "microscopy":
            problems.append("training.loss 'border_weighted_ce' needs the 2D 'microscopy' augmentation")
        if not weights:
            problems.append("training.loss 'border_weighted_ce' needs training.border_weights.border_class")
        elif weights["border_class"] not in task["classes"]:
            name = weights["border_class"]
            problems.append(f"training.border_weights.border_class: {name!r} is not one of the classes")
        if task["network"].get("deep_supervision"):
            problems.append("training.loss 'border_weighted_ce' does not combine with network.deep_supervision")
    problems += _fingerprint_consistency(task)
    for name in task.get("class_codes", {}):
        if name not in task["classes"][1:]:
            problems.append(f"class_codes: {name!r} is not one of the foreground classes (classes[1:])")
    if task["modality"] == "microscopy" and training.get("demo"):
        problems.append("training.demo: the synthetic demo set is 3D MRI-like; microscopy tasks train on real data")
    return problems


def _fingerprint_consistency(task: dict[str, Any]) -> list[str]:
    fingerprint = task.get("fingerprint")
    problems: list[str] = []
    if not fingerprint:
        return problems
    if fingerprint["channels"] != len(task["channels"]) or len(fingerprint["intensity"]) != len(task["channels"]):
        problems.append(f"fingerprint: one intensity entry per channel ({len(task['channels'])})")
    for key in ("spacing", "extent"):
        axes = fingerprint.get(key)
        if axes and (len(axes["min"]) != 3 or len(axes["max"]) != 3 or task["spatial_dims"] != 3):
            problems.append(f"fingerprint.{key}: volumes only, 3 entries in min and max")
        elif axes and any(lo > hi for lo, hi in zip(axes["min"], axes["max"], strict=True)):
            problems.append(f"fingerprint.{key}: min above max")
    for c, stats in enumerate(fingerprint["intensity"]):
        if any(lo > hi for lo, hi in stats.values()):
            problems.append(f"fingerprint.intensity[{c}]: a range whose first value is above its second")
    return problems


def validate_task(task: Any, source: str = "task") -> dict[str, Any]:
    """Checks ``task`` against :data:`TASK_SCHEMA` and the cross-field rules; returns a deep copy.

    Raises:
        TaskError: every problem found, each with its JSON path.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(TASK_SCHEMA)
    errors = sorted(validator.iter_errors(task), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]
    if problems:
        raise TaskError(source, problems)
    problems = _consistency(task)
    if problems:
        raise TaskError(source, problems)
    return copy.deepcopy(task)


def load_task(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates a task description file (a bundle folder means its ``configs/task.json``).

    Raises:
        TaskError: the file is missing, too large, not JSON, or not a valid task description.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TASK_FILE
    if not path.is_file():
        raise TaskError(str(path), ["missing: a bundle made by unet_med has configs/task.json"])
    if path.stat().st_size > MAX_TASK_BYTES:
        raise TaskError(str(path), [f"larger than {MAX_TASK_BYTES} bytes"])
    try:
        task = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
        raise TaskError(str(path), [f"not valid JSON ({e})"]) from e
    return validate_task(task, source=str(path))
