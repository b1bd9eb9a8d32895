"""The task schema's plausible bounds: each bound itself is accepted, one step past it is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_med.bundle.task import BOUNDS, TaskError, load_task, validate_task

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/task.json"))


def _task(name: str) -> dict:
    return json.loads((REPO / "bundles" / name / "configs" / "task.json").read_text())


def _set(task: dict, path: tuple, value) -> dict:
    node = task
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    return task


# (bundle whose task is changed, path to the value, the bound, one step past it, the field named in the error)
CASES = [
    ("unet", ("network", "features", 3), 1024, 1025, "network.features.3"),
    ("unet", ("network", "features", 0), 1, 0, "network.features.0"),
    ("unet", ("patch_size", 0), 256, 257, "patch_size.0"),
    ("unet", ("patch_size", 2), 1, 0, "patch_size.2"),
    ("em_membranes", ("patch_size", 1), 2048, 2049, "patch_size.1"),
    ("unet", ("preprocessing", "pixdim", 0), 0.1, 0.099, "preprocessing.pixdim.0"),
    ("unet", ("preprocessing", "pixdim", 2), 20.0, 20.01, "preprocessing.pixdim.2"),
    ("sarcoma_ct", ("preprocessing", "pixdim", 2), 20.0, 20.01, "preprocessing.pixdim.2"),
    ("unet", ("training", "demo", "spacing", 1), 0.1, 0.099, "training.demo.spacing.1"),
    ("em_membranes", ("preprocessing", "pixdim"), [0.001, 0.001], [0.0009, 0.001], "preprocessing.pixdim.0"),
    ("em_membranes", ("preprocessing", "pixdim"), [1000.0, 1.0], [1000.5, 1.0], "preprocessing.pixdim.0"),
    ("unet", ("training", "max_epochs"), 10000, 10001, "training.max_epochs"),
    ("unet", ("training", "max_epochs"), 1, 0, "training.max_epochs"),
    ("unet", ("training", "val_interval"), 10000, 10001, "training.val_interval"),
    ("unet", ("training", "batch_size"), 64, 65, "training.batch_size"),
    ("unet", ("training", "num_samples"), 32, 33, "training.num_samples"),
    ("unet", ("training", "val_sw_batch_size"), 64, 65, "training.val_sw_batch_size"),
    ("unet", ("training", "learning_rate"), 1.0, 1.5, "training.learning_rate"),
    ("unet", ("training", "warmup_epochs"), 1000, 1001, "training.warmup_epochs"),
    ("unet", ("training", "demo", "shape", 0), 256, 257, "training.demo.shape.0"),
    ("unet", ("training", "demo", "num_cases"), 256, 257, "training.demo.num_cases"),
    ("unet", ("inference", "ensemble"), 16, 17, "inference.ensemble"),
    ("unet", ("inference", "ensemble"), 1, 0, "inference.ensemble"),
]


@pytest.mark.parametrize(("bundle", "path", "bound", "past", "field"), CASES, ids=[c[-1] + f"={c[3]}" for c in CASES])
def test_a_bound_is_accepted_and_one_step_past_it_refused(bundle, path, bound, past, field):
    validate_task(_set(_task(bundle), path, bound))
    with pytest.raises(TaskError) as info:
        validate_task(_set(_task(bundle), path, past))
    message = str(info.value)
    assert field in message
    shown = past[0] if isinstance(past, list) else past
    assert str(shown) in message  # the value ...
    assert "minimum" in message or "maximum" in message  # ... and the bound it broke


@pytest.mark.parametrize(
    ("path", "too_many", "field"),
    [
        (("network", "features"), [8, 16, 32, 64, 128, 256, 512], "network.features"),
        (("channels",), [f"c{i}" for i in range(17)], "channels"),
        (("classes",), [f"c{i}" for i in range(256)], "classes"),
    ],
)
def test_counts_are_bounded(path, too_many, field):
    """Depth (levels of the U-Net), channels and classes: the list lengths."""
    task = _task("unet")
    for per_class in ("fingerprint", "class_codes"):  # sized to the task's own channels and classes
        task.pop(per_class, None)
    with pytest.raises(TaskError, match=field):
        validate_task(_set(task, path, too_many))
    validate_task(_set(task, path, too_many[:-1]))


def test_the_spacing_bound_depends_on_the_modality():
    """0.004 (nm-scale EM in micrometres) is a microscopy spacing, not a CT/MRI one in millimetres."""
    validate_task(_set(_task("em_membranes"), ("preprocessing", "pixdim"), [0.004, 0.004]))
    with pytest.raises(TaskError, match=r"preprocessing\.pixdim\.0: 0\.004 is less than the minimum of 0\.1"):
        validate_task(_set(_task("unet"), ("preprocessing", "pixdim"), [0.004, 1.2, 2.5]))


def test_every_bound_is_named_in_the_reference():
    reference = (REPO / "docs" / "memory.md").read_text()
    for name in BOUNDS:
        assert f"`{name.split(' ')[0]}`" in reference, name


@pytest.mark.parametrize("name", BUNDLES)
def test_shipped_bundles_sit_inside_the_bounds(name):
    load_task(REPO / "bundles" / name)
