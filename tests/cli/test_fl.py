"""``unet-med fl job|export|check`` (``fl simulate`` runs in tests/fl/test_simulate.py through the library)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unet_med.cli import main

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"


def test_fl_job(tmp_path: Path, capsys):
    out = tmp_path / "job"
    args = ["fl", "job", str(UNET), "--sites", "3", "--rounds", "5", "--local-epochs", "2", "--out", str(out)]
    args += ["--exclude-layers", "head", "--noise", "gaussian", "--noise-arg", "sigma=0.5", "--noise-arg", "clip=2"]
    args += ["--min-clients", "2", "--override", "learning_rate=0.001"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    client = json.loads((out / "app" / "config" / "config_fed_client.json").read_text())
    server = json.loads((out / "app" / "config" / "config_fed_server.json").read_text())
    algo = client["components"][0]["args"]
    assert algo["local_epochs"] == 2 and algo["train_kwargs"]["learning_rate"] == 0.001
    filters = client["task_result_filters"][0]["filters"]
    assert filters[-1] == {"path": "unet_med.fl.filters.GaussianNoise", "args": {"sigma": 0.5, "clip": 2}}
    assert server["workflows"][0]["args"]["num_rounds"] == 5 and server["workflows"][0]["args"]["min_clients"] == 2

    # A site checks the job it received: recognised as written, refused once its overrides carry code.
    assert main(["fl", "check", str(out)]) == 0
    report = capsys.readouterr().out
    assert report.startswith(f"{out}: recognised. Checked:\n")
    assert "config_fed_client.json is exactly what this site's unet-med fl job writes" in report
    assert "Not checked here: config_fed_server.json" in report
    client["components"][0]["args"]["train_kwargs"]["learning_rate"] = "$__import__('os').getcwd() and 0.001"
    (out / "app" / "config" / "config_fed_client.json").write_text(json.dumps(client))
    assert main(["fl", "check", str(out)]) == 1
    assert "train_kwargs: learning_rate: " in capsys.readouterr().err


def test_fl_job_errors(tmp_path: Path, capsys):
    base = ["fl", "job", str(UNET), "--sites", "2", "--rounds", "1", "--out", str(tmp_path / "job")]
    assert main([*base, "--noise-arg", "sigma=1"]) == 1
    assert "--noise-arg needs --noise" in capsys.readouterr().err
    assert main([*base, "--override", "dataset_dir=/data"]) == 1
    assert "each site sets its data" in capsys.readouterr().err
    assert main([*base, "--min-clients", "3"]) == 1
    assert not (tmp_path / "job").exists()


def test_fl_export(tmp_path: Path, capsys):
    state = torch.load(UNET / "models" / "model.pt", weights_only=True)
    torch.save({"model": state}, tmp_path / "FL_global_model.pt")
    out = tmp_path / "unet_fl"
    args = ["fl", "export", str(tmp_path / "FL_global_model.pt"), str(UNET), str(out), "--rounds", "2"]
    assert main([*args, "--sites", "hospital-a,hospital-b"]) == 0
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert "hospital-a, hospital-b" in meta["changelog"][meta["version"]]
    assert main([*args, "--sites", "2"]) == 1  # out exists
    assert "exists" in capsys.readouterr().err
