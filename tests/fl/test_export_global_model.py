"""``export_global_model``: the federation's global model as a new version of the bundle (no FLARE needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fl_helpers import UNET, tiny_net

from unet_med.fl.export import bump_version, export_global_model, find_global_model


def global_model(root: Path, state: dict[str, torch.Tensor]) -> Path:
    """A file laid out as FLARE's PyTorch persistor writes it, where the simulator leaves it."""
    path = root / "server" / "simulate_job" / "app_server" / "FL_global_model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"model": state, "train_conf": {"train": {"model": "persistor"}}}, path)
    return path


def test_export_writes_a_new_bundle_version(tmp_path: Path):
    state = {k: v + 0.01 for k, v in torch.load(UNET / "models" / "model.pt", weights_only=True).items()}
    global_model(tmp_path / "ws", state)
    out = export_global_model(tmp_path / "ws", UNET, tmp_path / "unet_fl", rounds=3, sites=["site-1", "site-2"])

    weights = torch.load(out / "models" / "model.pt", weights_only=True)
    assert sorted(weights) == sorted(state) and all(torch.equal(weights[k], state[k]) for k in state)
    assert sorted(p.name for p in (out / "models").iterdir()) == ["model.pt"]  # no stale exports
    old = json.loads((UNET / "configs" / "metadata.json").read_text())
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["version"] == bump_version(old["version"]) != old["version"]
    assert next(iter(meta["changelog"])) == meta["version"]
    entry = meta["changelog"][meta["version"]]
    assert "3 round(s)" in entry and "2 sites (site-1, site-2)" in entry and old["version"] in entry
    assert {k: v for k, v in meta["changelog"].items() if k != meta["version"]} == old["changelog"]
    assert {k: v for k, v in meta.items() if k not in ("version", "changelog")} == {
        k: v for k, v in old.items() if k not in ("version", "changelog")
    }
    for config in (UNET / "configs").iterdir():
        if config.name not in ("metadata.json", "task.json"):  # the new version goes through the task
            # inference.json names the version as the DICOM results' algorithm version: only that may differ
            before = config.read_text().replace(f'"{old["version"]}"', f'"{meta["version"]}"')
            assert (out / "configs" / config.name).read_text() == before
    assert (out / "LICENSE").is_file() and (out / "docs" / "README.md").is_file()
    from unet_med.bundle.recognize import recognize_bundle

    assert recognize_bundle(out).ok  # a normal bundle: it passes recognition (and so verify) like any other
    with pytest.raises(FileExistsError):
        export_global_model(tmp_path / "ws", UNET, out, rounds=3, sites=2)


def test_export_refuses_weights_of_another_network(tmp_path: Path):
    model = global_model(tmp_path / "ws", tiny_net().state_dict())
    with pytest.raises(ValueError, match="does not fit"):
        export_global_model(model, UNET, tmp_path / "out", rounds=1, sites=2)
    assert not (tmp_path / "out").exists()


def test_find_global_model(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="did the job finish a round"):
        find_global_model(tmp_path)
    first = global_model(tmp_path / "a", {})
    assert find_global_model(tmp_path) == first == find_global_model(first)
    global_model(tmp_path / "b", {})
    with pytest.raises(ValueError, match="several"):
        find_global_model(tmp_path)


@pytest.mark.parametrize(
    ("version", "part", "expected"),
    [("0.1.0", "minor", "0.2.0"), ("0.1.3", "patch", "0.1.4"), ("1.4.2", "major", "2.0.0")],
)
def test_bump_version(version: str, part: str, expected: str):
    assert bump_version(version, part) == expected


@pytest.mark.parametrize(("version", "part"), [("0.1", "minor"), ("0.1.x", "minor"), ("0.1.0", "micro")])
def test_bump_version_refuses(version: str, part: str):
    with pytest.raises(ValueError):
        bump_version(version, part)
