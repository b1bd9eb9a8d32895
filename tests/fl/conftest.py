"""Fixtures for the federated-learning tests: a tiny copy of the reference bundle and a FLARE check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from fl_helpers import UNET, tiny_net

from unet_med.fl import have_nvflare


@pytest.fixture
def flare() -> None:
    """Skips the test when NVIDIA FLARE is not installed (the project's default venv has no ``fl`` extra)."""
    if not have_nvflare():
        pytest.skip("NVIDIA FLARE / monai-nvflare not installed (pip install -e '.[fl]' in the clone)")


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """The reference bundle's configs, docs and licence in ``tmp_path/bundle``, with ``tiny_net()`` weights."""
    bundle = tmp_path / "bundle"
    for name in ("configs", "docs"):
        shutil.copytree(UNET / name, bundle / name)
    shutil.copy2(UNET / "LICENSE", bundle / "LICENSE")
    (bundle / "models").mkdir()
    torch.save(tiny_net().state_dict(), bundle / "models" / "model.pt")
    return bundle
