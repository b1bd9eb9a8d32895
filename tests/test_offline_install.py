"""A receiving site gets ``unet_med`` itself offline: a wheel built from the repository installs without an index
(docs/sharing-bundles.md, "Getting unet_med itself at a receiving site")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from unet_med import __version__

REPO = Path(__file__).resolve().parents[1]


def test_wheel_builds_and_installs_without_network(tmp_path):
    pip = [sys.executable, "-m", "pip"]
    env_flags = ["--disable-pip-version-check", "--no-input", "-q"]
    build = [*pip, "wheel", *env_flags, "--no-deps", "--no-build-isolation", str(REPO), "-w", str(tmp_path / "dist")]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("unet_med-*.whl")
    assert wheel.name.startswith(f"unet_med-{__version__}-")
    install = [*pip, "install", *env_flags, "--no-index", "--no-deps", "--find-links", str(tmp_path / "dist")]
    install += [f"unet-med=={__version__}", "--target", str(tmp_path / "site")]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    installed = tmp_path / "site" / "unet_med"
    assert (installed / "bundle" / "template.py").is_file() and (installed / "bundle" / "recognize.py").is_file()
