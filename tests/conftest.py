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


def write_oblique_volume(
    path: Path,
    shape: tuple[int, int, int] = (30, 26, 11),
    zooms: tuple[float, float, float] = (0.8, 0.9, 3.3),
    angle_deg: float = 7.0,
    origin: tuple[float, float, float] = (40.0, -12.5, 7.0),
    seed: int = 3,
):
    """Writes an LPS, anisotropic, rotated NIfTI volume (noise plus one bright box) and returns the nibabel image."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    data = rng.normal(100, 20, size=shape).astype(np.float32)
    box = tuple(slice(s // 4, 3 * s // 4) for s in shape)
    data[box] += 200
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(zooms)
    affine[:3, 3] = origin
    image = nib.Nifti1Image(data, affine)
    nib.save(image, path)
    return image


@pytest.fixture
def oblique_volume():
    """:func:`write_oblique_volume`, for tests of geometry round trips."""
    return write_oblique_volume
