"""Independent readers and the standard's validator, for tests (each skips with a reason when absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SARCOMA_CODES = {
    "tumour": {
        "category": {"scheme": "SCT", "value": "49755003", "meaning": "Morphologically Abnormal Structure"},
        "type": {"scheme": "SCT", "value": "108369006", "meaning": "Neoplasm"},
    }
}
PHANTOM_CODES = {
    "organ": {
        "category": {"scheme": "SCT", "value": "91723000", "meaning": "Anatomical Structure"},
        "type": {"scheme": "SCT", "value": "5366008", "meaning": "Hippocampus"},
    },
    "lesion": SARCOMA_CODES["tumour"],
}


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines ``dciodvfy`` (dicom3tools) prints for ``path``."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy not installed (Debian/Ubuntu: apt-get install dicom3tools)")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def segimage2itkimage(seg: Path, out: Path) -> Path:
    """dcmqi's SEG reader (3D Slicer's): the merged segments as ``out/1.nii.gz``."""
    tool = shutil.which("segimage2itkimage") or _venv_tool("segimage2itkimage")
    if tool is None:
        pytest.skip("dcmqi not installed (pip install dcmqi)")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [tool, "--inputDICOM", str(seg), "--outputDirectory", str(out), "--outputType", "nifti", "--mergeSegments"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out / "1.nii.gz"


def _venv_tool(name: str) -> str | None:
    import sys

    path = Path(sys.executable).parent / name
    return str(path) if path.is_file() else None
