"""``write_job``: the FLARE job's layout and configs, the refusals, and what a site's client sends back.

The layout tests need only ``unet_med``; the client test runs MONAI's ``ClientAlgoExecutor`` and ``MonaiAlgo`` in
this process on a tiny copy of the reference bundle, then FLARE's filters as the job configures them, and needs
the ``fl`` extra (skipped without it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fl_helpers import TINY, UNET

from unet_med.bundle.manifest import BundleError
from unet_med.fl.job import ALGO_PATH, DATALIST_ENV, DATASET_ENV, layer_regex, write_job


def strings(obj: Any) -> Iterator[str]:
    """Every string (keys included) anywhere in nested dicts, lists and tuples."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings(v)


def configs(job: Path) -> tuple[dict, dict, dict]:
    config = job / "app" / "config"
    return (
        json.loads((job / "meta.json").read_text()),
        json.loads((config / "config_fed_server.json").read_text()),
        json.loads((config / "config_fed_client.json").read_text()),
    )


def component(config: dict, cid: str) -> dict:
    return next(c for c in config["components"] if c["id"] == cid)


def test_job_layout_and_configs(tiny_bundle: Path, tmp_path: Path):
    job = write_job(tiny_bundle, tmp_path / "job", sites=3, rounds=4, local_epochs=2, overrides=TINY)
    bundle = job / "app" / "config" / "bundle"
    assert sorted(p.name for p in (bundle / "configs").iterdir()) == sorted(
        p.name for p in (tiny_bundle / "configs").iterdir()
    )
    assert (bundle / "models" / "model.pt").read_bytes() == (tiny_bundle / "models" / "model.pt").read_bytes()
    assert not (job / "app" / "custom").exists()  # no code travels with the job ("byoc" stays off)
    meta, server, client = configs(job)
    assert meta["deploy_map"] == {"app": ["@ALL"]} and meta["min_clients"] == 3

    (workflow,) = server["workflows"]
    assert workflow["path"].endswith("scatter_and_gather.ScatterAndGather")
    assert workflow["args"]["num_rounds"] == 4 and workflow["args"]["min_clients"] == 3
    assert component(server, "aggregator")["path"].endswith("InTimeAccumulateWeightedAggregator")
    persistor = component(server, "persistor")["args"]
    assert persistor["source_ckpt_filename"] == "models/model.pt" and persistor["overrides"] == TINY
    assert component(server, "quorum")["args"] == {"min_clients": 3}
    assert component(server, "tb_receiver")["path"].endswith("TBAnalyticsReceiver")
    assert component(server, "shareable_generator")["path"].endswith("FullModelShareableGenerator")  # FedAvg

    (executor,) = client["executors"]
    assert executor["executor"]["path"] == "monai_nvflare.client_algo_executor.ClientAlgoExecutor"
    assert executor["tasks"] == ["train", "validate"]  # no submit_model: a site's whole best model never leaves
    algo = component(client, "client_algo")
    assert algo["path"] == ALGO_PATH and algo["args"]["local_epochs"] == 2  # MonaiAlgo, after recognition
    train, evaluate = algo["args"]["train_kwargs"], algo["args"]["eval_kwargs"]
    for kwargs in (train, evaluate):
        assert kwargs["dataset_dir"] == "{$" + DATASET_ENV + "}"
        assert kwargs["datalist_file"] == "{$" + DATALIST_ENV + "}"
        assert "bundle_root" not in kwargs  # the bundle's own config folder decides (locate_bundle_root)
        assert kwargs["features"] == TINY["features"]
    assert train["lr_scheduler#T_max"] == 8 and train["val_interval"] == 9  # 4 rounds x 2 epochs
    assert evaluate["network"] == "$@network_def.to(@device)"
    assert client["task_data_filters"] == [] and client["task_result_filters"] == []
    # Nothing from this machine is baked in: no absolute path, no data location.
    for text in strings([meta, server, client]):
        assert not text.startswith("/") and str(tmp_path) not in text, text


def test_fedopt_steps_the_persistor_model_with_server_sgd(tiny_bundle: Path, tmp_path: Path):
    job = write_job(
        tiny_bundle, tmp_path / "job", sites=2, rounds=2, aggregation="fedopt", server_lr=2.0, server_momentum=0.5
    )
    meta, server, _ = configs(job)
    generator = component(server, "shareable_generator")
    assert generator["path"] == "unet_med.fl.fedopt.BundleFedOpt" and meta["name"].endswith("_fedopt")
    assert generator["args"] == {"persistor_id": "persistor", "lr": 2.0, "momentum": 0.5, "device": "cpu"}
    ids = [c["id"] for c in server["components"]]
    assert ids.index("persistor") < ids.index("shareable_generator")  # its model exists when the run starts


def test_weights_that_do_not_fit_are_left_behind(tmp_path: Path):
    job = write_job(UNET, tmp_path / "job", sites=2, rounds=1, overrides=TINY)
    _, server, _ = configs(job)
    assert component(server, "persistor")["args"]["source_ckpt_filename"] is None
    assert not (job / "app" / "config" / "bundle" / "models").exists()
    with pytest.raises(ValueError, match="does not fit"):
        write_job(UNET, tmp_path / "job2", sites=2, rounds=1, overrides=TINY, start_from_weights=True)
    job = write_job(UNET, tmp_path / "job3", sites=2, rounds=1)  # the bundle's own network: its weights fit
    _, server, _ = configs(job)
    assert component(server, "persistor")["args"]["source_ckpt_filename"] == "models/model.pt"


def test_exclude_layers_and_noise(tiny_bundle: Path, tmp_path: Path):
    noise = {"kind": "gaussian", "sigma": 0.5, "clip": 2.0}
    job = write_job(tiny_bundle, tmp_path / "job", sites=2, rounds=1, exclude_layers=["head"], noise=noise)
    _, _, client = configs(job)
    exclude = {
        "path": "nvflare.app_common.filters.exclude_vars.ExcludeVars",
        "args": {"exclude_vars": layer_regex(["head"])},
    }
    assert client["task_data_filters"] == [{"tasks": ["train", "validate"], "filters": [exclude]}]
    (results,) = client["task_result_filters"]
    assert results["tasks"] == ["train"]
    assert results["filters"] == [
        exclude,
        {"path": "unet_med.fl.filters.GaussianNoise", "args": {"sigma": 0.5, "clip": 2.0}},
    ]
    job = write_job(tiny_bundle, tmp_path / "job2", sites=2, rounds=1, noise={"kind": "percentile", "percentile": 5})
    _, _, client = configs(job)
    (percentile,) = client["task_result_filters"][0]["filters"]
    assert percentile["path"].endswith("PercentilePrivacy") and percentile["args"] == {"percentile": 5}


def test_layer_regex():
    pattern = re.compile(layer_regex(["head", "decoder.3"]))
    assert pattern.match("head.weight") and pattern.match("head") and pattern.match("decoder.3.conv.bias")
    assert not pattern.match("header.weight") and not pattern.match("decoder.30.weight")
    assert not pattern.match("encoder.0.head.weight")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aggregation": "fedprox"}, "'fedavg' or 'fedopt'"),
        ({"aggregation": "fedopt", "server_momentum": 1.0}, "server_momentum"),
        ({"min_clients": 3}, r"min_clients must lie in 1\.\.2"),
        ({"min_clients": 0}, "min_clients"),
        ({"rounds": 0}, "rounds must be at least 1"),
        ({"local_epochs": 0}, "local_epochs"),
        ({"overrides": {"dataset_dir": "/data/ct"}}, "each site sets its data"),
        ({"overrides": {"bundle_root": "/x"}}, "bundle_root: where a run writes"),
        ({"noise": {"kind": "laplace"}}, "noise kind must be one of"),
        ({"noise": {"kind": "gaussian", "epsilon": 1.0}}, "unknown: epsilon"),
    ],
)
def test_bad_arguments(tiny_bundle: Path, tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        write_job(tiny_bundle, tmp_path / "job", **{"sites": 2, "rounds": 1, **kwargs})
    assert not (tmp_path / "job").exists()


def test_refuses_a_non_empty_folder_and_an_unsafe_bundle(tiny_bundle: Path, tmp_path: Path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        write_job(tiny_bundle, tmp_path / "job", sites=2, rounds=1)
    train = json.loads((tiny_bundle / "configs" / "train.json").read_text())
    train["seed"] = "$__import__('os').system('echo pwned')"
    (tiny_bundle / "configs" / "train.json").write_text(json.dumps(train))
    with pytest.raises(BundleError, match="--trust-bundle-code"):
        write_job(tiny_bundle, tmp_path / "job2", sites=2, rounds=1)
    assert not (tmp_path / "job2").exists()


def test_client_sends_only_weight_differences_and_metrics(flare, tiny_bundle: Path, tmp_path: Path, monkeypatch):
    """One training task through the executor and the job's result filters, as a site would run it; everything
    that would leave the site is inspected: no path, case name or site detail, only arrays and two numbers."""
    from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
    from nvflare.apis.fl_constant import FLContextKey, ReturnCode
    from nvflare.apis.fl_context import FLContextManager
    from nvflare.apis.signal import Signal
    from nvflare.fuel.utils.class_utils import instantiate_class
    from nvflare.fuel.utils.json_scanner import JsonScanner
    from nvflare.fuel.utils.wfconf import resolve_var_refs

    noise = {"kind": "gaussian", "sigma": 0.1, "clip": 1.0, "seed": 0}
    job = write_job(
        tiny_bundle, tmp_path / "job", sites=2, rounds=1, overrides=TINY, exclude_layers=["head"], noise=noise
    )
    app = job / "app"
    _, _, client = configs(job)
    # What FLARE does to the client config at the site: system variables and {$ENV} (unset here: demo data).
    monkeypatch.delenv(DATASET_ENV, raising=False)
    monkeypatch.delenv(DATALIST_ENV, raising=False)
    resolve_var_refs(JsonScanner(client), {**client, "JOB_CONFIG_DIR": str(app / "config"), "SITE_NAME": "site-1"})
    algo_args = component(client, "client_algo")["args"]
    assert algo_args["train_kwargs"]["dataset_dir"] is None
    algo = instantiate_class(component(client, "client_algo")["path"], algo_args)
    spec = client["executors"][0]["executor"]
    executor = instantiate_class(spec["path"], {**spec["args"], "stats_sender_id": None})
    data_filters = [instantiate_class(f["path"], f["args"]) for f in client["task_data_filters"][0]["filters"]]
    result_filters = [instantiate_class(f["path"], f["args"]) for f in client["task_result_filters"][0]["filters"]]

    class Engine:
        def get_component(self, cid: str) -> Any:
            return algo if cid == "client_algo" else None

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    global_weights = {k: v.numpy() for k, v in torch.load(tiny_bundle / "models" / "model.pt").items()}
    manager = FLContextManager(
        engine=Engine(), identity_name="site-1", job_id="job", public_stickers={}, private_stickers={}
    )
    with manager.new_context() as fl_ctx:
        fl_ctx.set_prop(FLContextKey.APP_ROOT, str(app), private=True, sticky=True)
        executor.initialize(fl_ctx)
        task = DXO(DataKind.WEIGHTS, dict(global_weights)).to_shareable()
        for f in data_filters:
            task = f.process(task, fl_ctx)
        assert not [k for k in from_shareable(task).data if k.startswith("head")]
        result = executor.execute("train", task, fl_ctx, Signal())
        assert result.get_return_code() == ReturnCode.OK
        raw = {k: v.copy() for k, v in from_shareable(result).data.items()}
        for f in result_filters:
            result = f.process(result, fl_ctx)
    assert list(cwd.iterdir()) == []  # the bundle wrote into its job copy, not the working directory

    dxo = from_shareable(result)
    assert dxo.data_kind == DataKind.WEIGHT_DIFF
    assert sorted(dxo.data) == sorted(k for k in global_weights if not k.startswith("head"))
    for name, value in dxo.data.items():
        assert isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.shape == global_weights[name].shape
    assert any(np.abs(raw[k]).max() > 0 for k in dxo.data)  # the site trained
    assert not all(np.array_equal(raw[k], dxo.data[k]) for k in dxo.data)  # and the noise was added
    # Besides two numbers, FLARE records which filters ran (their class names).
    assert set(dxo.meta) <= {MetaKey.NUM_STEPS_CURRENT_ROUND, MetaKey.INITIAL_METRICS, MetaKey.FILTER_HISTORY}
    assert isinstance(dxo.meta[MetaKey.NUM_STEPS_CURRENT_ROUND], int)
    assert isinstance(dxo.meta[MetaKey.INITIAL_METRICS], float)
    assert dxo.meta[MetaKey.FILTER_HISTORY] == ["ExcludeVars", "GaussianNoise"]
    sent = list(strings(dict(result)))
    leaks = [s for s in sent if "/" in s or ".nii" in s or "case_" in s or "site-1" in s or str(tmp_path) in s]
    assert leaks == []
