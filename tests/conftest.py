"""Shared test settings and fixtures."""

from __future__ import annotations

import locale
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNET_MED_SHARED", REPO.parent / "shared"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (real data and schemas); tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED} (set UNET_MED_SHARED)")
    return SHARED


@pytest.fixture(autouse=True)
def _restore_locale():
    """Writing DICOM through SimpleITK (GDCM) switches the process locale to "C", after which Python opens text
    files as ASCII and unrelated code (torch.compile's templates) fails; every test starts from the same locale."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)
