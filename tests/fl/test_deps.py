"""The optional FLARE dependency: a missing package is an ImportError that names the ``fl`` extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from unet_med.fl import deps, simulate


def test_missing_nvflare_names_the_extra(monkeypatch, tmp_path: Path):
    real = importlib.util.find_spec
    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name: None if name == "nvflare" else real(name))
    assert not deps.have_nvflare()
    with pytest.raises(ImportError, match=r"nvflare not installed.*pip install 'unet-med\[fl\]'"):
        deps.require_nvflare()
    with pytest.raises(ImportError, match=r"unet-med\[fl\]"):
        simulate(tmp_path, tmp_path / "ws")
    assert not (tmp_path / "ws").exists()
