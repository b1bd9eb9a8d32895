"""The template: task descriptions in, configs out; every shipped bundle is exactly what it makes."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from unet_med.bundle.build import build_bundle, check_bundle, new_bundle, task_from_plan
from unet_med.bundle.task import TaskError, load_task, validate_task
from unet_med.bundle.template import render

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/task.json"))


def test_every_shipped_bundle_has_a_task_description():
    assert sorted(p.name for p in (REPO / "bundles").iterdir() if p.is_dir()) == BUNDLES
    assert len(BUNDLES) == 6


@pytest.mark.parametrize("name", BUNDLES)
def test_committed_configs_are_what_the_template_makes(name):
    assert check_bundle(REPO / "bundles" / name) == []


@pytest.mark.parametrize("name", BUNDLES)
def test_dollar_expressions_come_from_the_template_only(name):
    """Every ``$`` string in a bundle is one the template writes for every bundle of its kind: none is per-task."""
    task = load_task(REPO / "bundles" / name)

    def dollars(obj, out):
        if isinstance(obj, dict):
            for v in obj.values():
                dollars(v, out)
        elif isinstance(obj, list):
            for v in obj:
                dollars(v, out)
        elif isinstance(obj, str) and obj.startswith("$"):
            out.add(obj)
        return out

    for file, text in render(task).items():
        if file.endswith(".json"):
            found = dollars(json.loads(text), set())
            assert all(len(e) < 140 for e in found), file  # one-line plumbing
            assert not any(str(v) in e for v in task["classes"] for e in found if len(str(v)) > 3), file


def test_drift_is_reported_by_file_and_id(tmp_path):
    bundle = tmp_path / "unet"
    shutil.copytree(REPO / "bundles" / "unet" / "configs", bundle / "configs")
    train = json.loads((bundle / "configs" / "train.json").read_text())
    train["learning_rate"] = 0.1
    (bundle / "configs" / "train.json").write_text(json.dumps(train, indent=4) + "\n")
    (bundle / "configs" / "evaluate.json").unlink()
    problems = check_bundle(bundle)
    assert any("train.json" in p and "'learning_rate' differs" in p for p in problems)
    assert any("evaluate.json: missing" in p for p in problems)
    changed = build_bundle(bundle)
    assert {p.name for p in changed} == {"train.json", "evaluate.json"}
    assert check_bundle(bundle) == []


def test_a_task_change_changes_the_configs(tmp_path):
    bundle = tmp_path / "unet"
    shutil.copytree(REPO / "bundles" / "unet" / "configs", bundle / "configs")
    task = json.loads((bundle / "configs" / "task.json").read_text())
    task["network"]["features"] = [8, 16, 32, 64]
    task["training"]["max_epochs"] = 3
    (bundle / "configs" / "task.json").write_text(json.dumps(task))
    assert {p.split(":")[0] for p in check_bundle(bundle)} == {"configs/train.json", "configs/inference.json"}
    build_bundle(bundle)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert train["features"] == inference["features"] == [8, 16, 32, 64]
    assert train["max_epochs"] == 3


def _reference_task() -> dict:
    return json.loads((REPO / "bundles" / "unet" / "configs" / "task.json").read_text())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("classes", 1), "$__import__('os').system('true')", "classes.1"),
        (("classes", 1), "@train#trainer", "classes.1"),
        (("classes", 1), "%configs/x.json#a", "classes.1"),
        (("channels", 0), "a#b", "channels.0"),
        (("card", "description"), "$exec('x')", "card.description"),
        (("network", "norm"), "layer", "network.norm"),
        (("modality",), "pet", "modality"),
        (("network", "extra"), 1, "network"),
        (("_target_",), "os.system", "(top level)"),
        (("patch_size",), [48, 48], "patch_size"),
    ],
)
def test_task_schema_refuses_code_and_unknown_values(path, value, message):
    task = _reference_task()
    node = task
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(TaskError) as info:
        validate_task(task)
    assert message in str(info.value)


def test_task_file_errors_name_the_file(tmp_path):
    with pytest.raises(TaskError, match="missing"):
        load_task(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "task.json").write_text("{not json")
    with pytest.raises(TaskError, match=r"task\.json: not a valid task description"):
        load_task(tmp_path)


def test_render_is_deterministic_and_leaves_the_task_alone():
    task = _reference_task()
    before = copy.deepcopy(task)
    assert render(task) == render(task)
    assert task == before


def test_new_bundle_from_a_plan_runs_the_property_checks(tmp_path):
    from monai.bundle import ConfigWorkflow

    plan = {
        "pixdim": [0.8, 0.8, 2.5],
        "patch_size": [64, 64, 16],
        "features": [16, 32, 64, 128],
        "network_def#pool_sizes": [[2, 2, 1], [2, 2, 2], [2, 2, 2]],
        "modality": "ct",
        "in_channels": 1,
        "num_classes": 2,
        "class_names": ["background", "liver"],
        "preprocessing#ct_window": [-100.0, 200.0],
    }
    task = task_from_plan(plan, name="liver CT")
    bundle = new_bundle(task, tmp_path / "liver_ct")
    assert check_bundle(bundle) == []
    assert (bundle / "docs" / "README.md").is_file() and (bundle / "LICENSE").is_file()
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert inference["ct_window"] == [-100.0, 200.0]
    assert inference["network_def"]["pool_sizes"] == plan["network_def#pool_sizes"]
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"), workflow_type="infer", logging_file=False
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.bundle_root == str(bundle.resolve())
    with pytest.raises(FileExistsError):
        new_bundle(task, bundle)


def test_training_speed_fields_render_into_train_json():
    """The step's compilation and layout, the schedule and the validation window are task fields."""
    task = _reference_task()
    task["training"].update(
        {"compile": True, "channels_last": True, "lr_schedule": "warmup_cosine", "warmup_epochs": 2}
    )
    task["training"].update({"val_overlap": 0.5, "val_sw_batch_size": 2})
    train = json.loads(render(task)["train.json"])
    assert train["compile"] is True and train["channels_last"] is True
    assert train["train"]["dataloader"]["drop_last"] == "@compile"  # one batch shape: no recompilation
    step = train["train"]["inferer"]["inferer"]
    assert step["_target_"] == "unet_med.engines.CompiledInferer" and step["channels_last"] == "@channels_last"
    assert train["lr_scheduler"]["_target_"] == "monai.optimizers.WarmupCosineSchedule"
    assert train["warmup_epochs"] == 2
    schedule = next(h for h in train["train"]["handlers"] if h["_target_"] == "LrScheduleHandler")
    assert schedule["epoch_level"] is False  # the warm-up and the cosine step per iteration
    window = train["validate"]["inferer"]["inferer"]
    assert (window["overlap"], window["sw_batch_size"]) == (0.5, 2)
    defaults = json.loads(render(_reference_task() | {"training": {}})["train.json"])
    assert defaults["lr_scheduler"]["_target_"].endswith("CosineAnnealingLR")
    assert (defaults["compile"], defaults["channels_last"]) == (True, True)
    assert defaults["validate"]["inferer"]["inferer"]["overlap"] == 0.25
    with pytest.raises(TaskError, match="lr_schedule"):
        validate_task(_reference_task() | {"training": {"lr_schedule": "step"}})


def test_deep_supervision_adds_heads_and_wraps_the_loss():
    """With ``network.deep_supervision`` the network has auxiliary heads (in every config, so the weights load
    for inference) and training weighs a loss per decoder stage; without it neither appears."""
    task = _reference_task()
    plain = render(task)
    assert "deep_supervision" not in plain["train.json"] and "DeepSupervisionLoss" not in plain["train.json"]
    task["network"]["deep_supervision"] = True
    files = render(task)
    train = json.loads(files["train.json"])
    assert train["loss"]["_target_"] == "DeepSupervisionLoss"
    assert train["loss"]["loss"]["_target_"] == "DiceCELoss"
    for name in ("train.json", "inference.json"):
        assert json.loads(files[name])["network_def"]["deep_supervision"] is True
    with pytest.raises(TaskError, match="deep_supervision"):
        validate_task(_reference_task() | {"network": {"features": [8, 16], "deep_supervision": "yes"}})


def test_border_weighted_loss_renders_the_weight_map_and_the_pixel_weighted_loss():
    """``training.loss: border_weighted_ce`` puts the weight map into the augmentation (by class index) and the
    pixel-weighted cross-entropy into training; the task is refused where the combination cannot work."""
    task = load_task(REPO / "bundles" / "em_membranes")
    assert "border_weights" not in render(task)["train.json"]
    task["training"] |= {"loss": "border_weighted_ce", "border_weights": {"border_class": "membrane", "sigma": 4}}
    train = json.loads(render(task)["train.json"])
    assert train["loss"] == {"_target_": "unet_med.losses.PixelWeightedCrossEntropyLoss"}
    assert train["train"]["augmentation"]["border_weights"] == {
        "border_class": task["classes"].index("membrane"),
        "w0": 10.0,
        "sigma": 4,
        "keep_class_total": True,
    }
    for change, message in [
        ({"border_weights": {"border_class": "nucleus"}}, "not one of the classes"),
        ({"border_weights": None}, "needs training.border_weights"),
        ({"augmentation": "volume"}, "'microscopy' augmentation"),
    ]:
        bad = copy.deepcopy(task)
        bad["training"] |= change
        if bad["training"]["border_weights"] is None:
            del bad["training"]["border_weights"]
        with pytest.raises(TaskError, match=message):
            validate_task(bad)
    bad = copy.deepcopy(task)
    bad["network"]["deep_supervision"] = True
    with pytest.raises(TaskError, match="deep_supervision"):
        validate_task(bad)
