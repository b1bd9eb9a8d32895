"""A site's checks on a received FLARE job: ``check_job`` before running it, ``RecognizedMonaiAlgo`` when it starts.

Needs only ``unet_med`` and MONAI (``MonaiAlgo`` is MONAI's own), not the ``fl`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monai.fl.client.monai_algo as monai_algo
import pytest
from fl_helpers import TINY
from monai.fl.utils.constants import ExtraItems

from unet_med.bundle.manifest import BundleError
from unet_med.fl.job import ALGO_PATH, write_job
from unet_med.fl.site import SITE_TRUST_ENV, RecognizedMonaiAlgo, check_job

CLIENT = Path("app/config/config_fed_client.json")


@pytest.fixture
def job(tiny_bundle: Path, tmp_path: Path) -> Path:
    noise = {"kind": "gaussian", "sigma": 0.5, "clip": 1.0}
    return write_job(
        tiny_bundle,
        tmp_path / "job",
        sites=2,
        rounds=3,
        local_epochs=2,
        overrides=TINY,
        exclude_layers=["head"],
        noise=noise,
    )


def _algo(client: dict) -> dict:
    return next(c for c in client["components"] if c["id"] == "client_algo")


def _edit_client(job: Path, edit: Callable[[dict], Any]) -> None:
    client = json.loads((job / CLIENT).read_text())
    edit(client)
    (job / CLIENT).write_text(json.dumps(client))


def test_a_job_the_site_would_write_itself_is_accepted(job: Path):
    assert check_job(job) == []
    assert _algo(json.loads((job / CLIENT).read_text()))["path"] == ALGO_PATH


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: _algo(c).update(path="monai.fl.client.MonaiAlgo"), "not unet_med.fl.site.RecognizedMonaiAlgo"),
        (lambda c: _algo(c)["args"]["train_kwargs"].update(x="$__import__('os').getcwd()"), "train_kwargs: x"),
        (lambda c: _algo(c)["args"]["eval_kwargs"].update(network="$print('hi')"), "eval_kwargs: network"),
        (lambda c: _algo(c)["args"]["train_kwargs"].update(loss={"_target_": "os.system"}), "'_target_'"),
        (lambda c: _algo(c)["args"]["train_kwargs"].update({"loss#_target_": "x"}), "not a plain config id"),
        (lambda c: _algo(c)["args"]["train_kwargs"].update(ckpt_dir="/tmp/elsewhere"), "ckpt_dir"),
        (lambda c: _algo(c)["args"]["train_kwargs"].update(features="%configs/other.json#features"), "features"),
        (lambda c: _algo(c)["args"].update(disable_ckpt_loading=False), "disable_ckpt_loading"),
        (lambda c: _algo(c)["args"].update(config_filters_filename="configs/f.json"), "config_filters_filename"),
        (lambda c: _algo(c)["args"].update(config_train_filename="configs/evaluate.json"), "config_train_filename"),
        (lambda c: _algo(c)["args"]["train_kwargs"].update(dataset_dir="/data/leaked"), "differs"),
        (lambda c: c["components"].append({"id": "x", "path": "os.system", "args": {}}), "differs"),
        (lambda c: c["task_result_filters"].clear(), "differs"),  # the noise filter dropped
    ],
)
def test_a_changed_client_config_is_refused(job: Path, edit: Callable[[dict], Any], expected: str):
    _edit_client(job, edit)
    problems = check_job(job)
    assert problems and any(expected in p for p in problems), problems


def test_extra_files_and_a_changed_bundle_are_refused(job: Path):
    train = job / "app" / "config" / "bundle" / "configs" / "train.json"
    config = json.loads(train.read_text())
    config["imports"].append("$import os")
    train.write_text(json.dumps(config, indent=4))
    (job / "app" / "custom").mkdir()
    (job / "app" / "custom" / "evil.py").write_text("import os\n")
    problems = check_job(job)
    assert any(p.startswith("app/custom/evil.py") for p in problems)
    assert any("configs/train.json" in p for p in problems), problems
    # Trusting the bundle's code on purpose keeps every other check.
    assert [p for p in check_job(job, trust_bundle_code=True)] == [p for p in problems if "configs/train.json" not in p]


def test_not_a_job_is_named(tmp_path: Path):
    (problem,) = check_job(tmp_path)
    assert str(tmp_path) in problem and "config_fed_client.json" in problem


class _Parsed(Exception):
    """Raised by a stand-in ConfigWorkflow: MONAI got as far as parsing the bundle."""


def _site_algo(job: Path, monkeypatch: pytest.MonkeyPatch) -> RecognizedMonaiAlgo:
    def parse(*args: Any, **kwargs: Any) -> None:
        raise _Parsed

    monkeypatch.setattr(monai_algo, "ConfigWorkflow", parse)
    monkeypatch.delenv(SITE_TRUST_ENV, raising=False)
    args = _algo(json.loads((job / CLIENT).read_text()))["args"]
    return RecognizedMonaiAlgo(**args)


def test_the_site_component_parses_a_recognised_bundle(job: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(_Parsed):
        _site_algo(job, monkeypatch).initialize({ExtraItems.APP_ROOT: str(job / "app")})


def test_the_site_component_refuses_a_changed_bundle_before_parsing(job: Path, monkeypatch: pytest.MonkeyPatch):
    evaluate = job / "app" / "config" / "bundle" / "configs" / "evaluate.json"
    config = json.loads(evaluate.read_text())
    config["run"] = ["$__import__('os').getcwd()", *config.get("run", [])]
    evaluate.write_text(json.dumps(config))
    algo = _site_algo(job, monkeypatch)
    with pytest.raises(BundleError, match=f"{SITE_TRUST_ENV}=1") as caught:
        algo.initialize({ExtraItems.APP_ROOT: str(job / "app")})
    assert any("configs/evaluate.json" in p for p in caught.value.problems)
    monkeypatch.setenv(SITE_TRUST_ENV, "1")  # the site's own decision, from its environment
    with pytest.raises(_Parsed):
        algo.initialize({ExtraItems.APP_ROOT: str(job / "app")})


def test_the_site_component_refuses_code_in_its_arguments_even_when_trusting(
    job: Path, monkeypatch: pytest.MonkeyPatch
):
    _edit_client(job, lambda c: _algo(c)["args"]["train_kwargs"].update(x="$__import__('os').getcwd()"))
    algo = _site_algo(job, monkeypatch)
    monkeypatch.setenv(SITE_TRUST_ENV, "1")
    with pytest.raises(BundleError, match="client arguments"):
        algo.initialize({ExtraItems.APP_ROOT: str(job / "app")})


@pytest.mark.parametrize(
    "overrides",
    [{"features": "$[4, 8, 16, 32]"}, {"output_dir": "runs_elsewhere"}, {"loss": {"_target_": "torch.nn.MSELoss"}}],
)
def test_write_job_refuses_overrides_a_site_would_refuse(tiny_bundle: Path, tmp_path: Path, overrides: dict):
    with pytest.raises(ValueError, match="plain data a site accepts"):
        write_job(tiny_bundle, tmp_path / "job", sites=2, rounds=1, overrides=overrides)
    assert not (tmp_path / "job").exists()
