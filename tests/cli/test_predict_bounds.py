"""``unet-med predict`` on hostile scans, in a subprocess under an address-space limit so that a failure cannot take
the machine down: each is refused in one line, quickly, with little memory, and the other cases still run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.hostile import lying_nifti, promising_nifti_gz
from unet_med.data import synthetic_volume

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"
# The child: an address-space limit first (torch alone maps ~1 GB), the libraries imported, then the command line
# timed (the imports take minutes on a busy machine); its peak RSS and time last.
DRIVER = """
import resource, sys, time
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import unet_med.inference.predictor
from unet_med.cli import main
start = time.perf_counter()
try:
    code = main(sys.argv[2:])
finally:
    # VmHWM: this process image's own peak (ru_maxrss carries over the forking parent's peak through exec)
    rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(f"maxrss_kb={rss} seconds={time.perf_counter() - start}", file=sys.stderr)
sys.exit(code)
"""
AS_LIMIT = 4 << 30


def run_limited(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, int, float]:
    """Runs ``unet-med ARGS`` under :data:`AS_LIMIT`; returns the process, its peak RSS in bytes and the seconds the
    command took after the imports."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(AS_LIMIT), *args], capture_output=True, text=True, timeout=timeout
    )
    tail = proc.stderr.rsplit("maxrss_kb=", 1)[1].split()
    return proc, int(tail[0]) * 1024, float(tail[1].removeprefix("seconds="))


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    """A folder of cases: one good scan and three hostile ones."""
    cases = tmp_path / "cases"
    cases.mkdir()
    image = synthetic_volume((40, 44, 20), num_classes=3, seed=0)[0]
    nib.save(nib.Nifti1Image(image, np.diag([1.2, 1.2, 2.5, 1.0])), cases / "good.nii.gz")
    promising_nifti_gz(cases / "bomb_8gb.nii.gz", (2048, 2048, 512))  # 8 GiB of zeros in an 8 MB file
    promising_nifti_gz(cases / "header_only_8gb.nii.gz", (2048, 2048, 512), data=False)
    lying_nifti(cases / "liar.nii", (256, 256, 256), holds_bytes=1 << 20)  # promises 64 MiB, holds 1 MiB
    lying_nifti(cases / "liar_gz.nii.gz", (512, 512, 512), holds_bytes=100_000)  # 512 MiB from 100 kB
    return cases


def test_hostile_scans_are_refused_in_one_line_and_the_good_case_still_runs(hostile_folder, tmp_path):
    if not (UNET / "models" / "model.pt").is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    out = tmp_path / "out"
    proc, rss, seconds = run_limited(
        "predict", "--quiet", "--bundle", str(UNET), "--input", str(hostile_folder), "--output", str(out)
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # no partial output of a refused case; qc.json records every case, refused ones with their reason
    assert sorted(p.name for p in out.iterdir()) == ["good_seg.nii.gz", "qc.json"]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    assert len(failed) == 4
    for name, reason in [
        ("bomb_8gb.nii.gz", "more than the limit of 1,073,741,824 voxels"),
        ("header_only_8gb.nii.gz", "a lying header"),  # 8 GiB promised by a 400-byte file
        ("liar.nii", "a lying header"),
        ("liar_gz.nii.gz", "a lying header"),
    ]:
        assert any(name in line and reason in line for line in failed), (name, failed)
    assert rss < 1 << 30, f"peak RSS {rss / 2**20:.0f} MiB"
    assert seconds < 60  # the good case included (each refusal takes milliseconds)


def test_the_voxel_limit_is_set_on_the_command_line(hostile_folder, tmp_path):
    if not (UNET / "models" / "model.pt").is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    good = hostile_folder / "good.nii.gz"
    proc, _, _ = run_limited(
        "predict", "--quiet", "--bundle", str(UNET), "--input", str(good), "--output", str(tmp_path / "o"),
        "--max-voxels", str(40 * 44 * 20 - 1),
    )  # fmt: skip
    assert proc.returncode == 1 and "more than the limit of 35,199 voxels" in proc.stderr
    assert not (tmp_path / "o" / "good_seg.nii.gz").exists()
