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
