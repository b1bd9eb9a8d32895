"""The optional FLARE dependency: a missing package is an ImportError that names the ``fl`` extra and the command
that installs it (from the clone: unet-med is not on a package index)."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

from unet_med.cli import main
from unet_med.fl import deps, simulate

CLONE = Path(__file__).resolve().parents[2]


def test_missing_nvflare_names_the_extra(monkeypatch, tmp_path: Path):
    real = importlib.util.find_spec
    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name: None if name == "nvflare" else real(name))
    assert not deps.have_nvflare()
    with pytest.raises(ImportError, match=r"nvflare not installed.*pip install -e .*\[fl\]"):
        deps.require_nvflare()
    with pytest.raises(ImportError, match=r"\[fl\]"):
        simulate(tmp_path, tmp_path / "ws")
    assert not (tmp_path / "ws").exists()


def test_the_install_command_is_one_that_works(monkeypatch, tmp_path: Path, capsys):
    """Not ``pip install 'unet-med[fl]'`` (no index has unet-med): an editable install of this clone with the pip of
    the Python that runs unet-med."""
    command = deps.fl_install_command()
    assert shlex.split(command) == [sys.executable, "-m", "pip", "install", "-e", f"{CLONE}[fl]"]
    assert "unet-med[fl]" not in deps.FL_EXTRA_HINT and command in deps.FL_EXTRA_HINT
    real = importlib.util.find_spec
    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name: None if name == "nvflare" else real(name))
    assert main(["fl", "simulate", str(tmp_path), "--workspace", str(tmp_path / "ws")]) == 1
    assert command in capsys.readouterr().err
