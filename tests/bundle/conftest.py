"""Fixtures for the bundle tooling tests: a writable copy of the reference bundle and its packed zip."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unet"
SCHEMA = REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"


def copy_bundle(dest: Path) -> Path:
    """A copy of bundles/unet without its training outputs (runs/, last.pt, caches)."""
    shutil.copytree(BUNDLE, dest, ignore=shutil.ignore_patterns("runs", "last.pt", ".cache", "predictions"))
    return dest


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    return copy_bundle(tmp_path / "unet")


@pytest.fixture(scope="session")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bundles/unet packed once for the whole session."""
    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    from unet_med.bundle.pack import pack_bundle

    return pack_bundle(BUNDLE, tmp_path_factory.mktemp("packed") / "unet-0.1.0.zip")


def _tamper(src: Path, dest: Path, member: str = "models/model.pt") -> Path:
    """A copy of the zip with one byte of ``member`` flipped and the manifest kept as it was."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = bytearray(zin.read(info))
            if info.filename == member:
                data[len(data) // 2] ^= 0xFF
            zout.writestr(info, bytes(data))
    return dest


@pytest.fixture
def tamper():
    """``tamper(src, dest, member="models/model.pt")``: a copy of a zip with one byte of ``member`` flipped and
    its manifest unchanged."""
    return _tamper


def tiny_cv_bundle(dest: Path, num_folds: int = 2) -> Path:
    """The reference bundle remade from a tiny task: 4 demo cases of 32^3, a 4-32 feature net, 16^3 patches,
    ``num_folds`` folds, 1 epoch; its ``models/model.pt`` holds that net's initial weights."""
    import json

    import torch

    from unet_med.bundle.build import build_bundle
    from unet_med.networks import UNet

    for name in ("configs", "docs"):
        shutil.copytree(BUNDLE / name, dest / name)
    shutil.copy2(BUNDLE / "LICENSE", dest / "LICENSE")
    task = json.loads((dest / "configs" / "task.json").read_text())
    task["network"]["features"] = [4, 8, 16, 32]
    task["patch_size"] = [16, 16, 16]
    task["training"] = {
        "max_epochs": 1,
        "val_interval": 1,
        "batch_size": 2,
        "num_samples": 1,
        "num_folds": num_folds,
        "demo": {"num_cases": 4, "shape": [32, 32, 32], "spacing": [1.2, 1.2, 2.5]},
    }
    (dest / "configs" / "task.json").write_text(json.dumps(task, indent=4) + "\n")
    build_bundle(dest)
    (dest / "models").mkdir()
    torch.manual_seed(0)
    net = UNet(3, 1, 3, features=[4, 8, 16, 32], norm=["instance", {"affine": True}])
    torch.save(net.state_dict(), dest / "models" / "model.pt")
    return dest


@pytest.fixture(scope="session")
def cv_trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle after ``unet-med bundle cv`` (2 folds, 2 epochs) where fold 0 had been killed after epoch 1,
    so the run resumed it; the out-of-fold report is written too."""
    from unet_med.bundle.run import run_bundle
    from unet_med.cli import main

    bundle = tiny_cv_bundle(tmp_path_factory.mktemp("cv") / "bundle")
    run_bundle(bundle, "training", {"fold": 0, "device": "cpu"})  # a fold that stopped: last.pt, no fold.json
    assert main(["bundle", "cv", str(bundle), "--max_epochs", "2", "--device", "cpu"]) == 0
    return bundle
