"""``unet-med predict`` plans memory per case: ``--dry-run`` prints the plans, and bundles re-rendered with an absurd
spacing, window or width are refused in one line, quickly, under an address-space limit."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.bundle.conftest import copy_bundle
from tests.cli.test_predict_bounds import UNET, run_limited
from tests.hostile import promising_nifti_gz
from unet_med.bundle.build import build_bundle
from unet_med.cli import main
from unet_med.data import synthetic_volume

pytestmark = pytest.mark.skipif(not (UNET / "models" / "model.pt").is_file(), reason="no weights in bundles/unet")


def rerendered(tmp_path: Path, **changes) -> Path:
    """bundles/unet with its task changed and its configs rendered again (a recognised bundle)."""
    bundle = copy_bundle(tmp_path / "bundle")
    task = json.loads((bundle / "configs" / "task.json").read_text())
    for path, value in changes.items():
        node = task
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    (bundle / "configs" / "task.json").write_text(json.dumps(task, indent=4) + "\n")
    build_bundle(bundle)
    return bundle


def good_case(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    image = synthetic_volume((40, 44, 20), num_classes=3, seed=0)[0]
    nib.save(nib.Nifti1Image(image, np.diag([1.2, 1.2, 2.5, 1.0])), folder / "good.nii.gz")
    return folder / "good.nii.gz"


def test_dry_run_prints_a_plan_per_case_and_writes_nothing(tmp_path, capsys):
    cases = tmp_path / "cases"
    good_case(cases)
    promising_nifti_gz(cases / "big.nii.gz", (512, 512, 300), dtype="int16")  # 150 MiB of zeros, 1 mm
    out = tmp_path / "out"
    code = main(["predict", "--quiet", "--bundle", str(UNET), "--input", str(cases), "--output", str(out), "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and not out.exists()
    plans = {line.split(":")[0]: line for line in lines if line.startswith("plan")}
    assert set(plans) == {"plan  big.nii.gz", "plan  good.nii.gz"}
    assert "512x512x300 -> 427x427x120: peak ~" in plans["plan  big.nii.gz"]
    assert "sw_batch_size 4, stitching float32" in plans["plan  good.nii.gz"]


def test_a_budget_too_small_for_a_case_refuses_it_in_one_line_and_runs_the_rest(tmp_path, capsys):
    cases = tmp_path / "cases"
    good_case(cases)
    promising_nifti_gz(cases / "big.nii.gz", (512, 512, 300), dtype="int16")  # needs ~0.5 GiB more than good
    out = tmp_path / "out"
    args = ["predict", "--quiet", "--bundle", str(UNET), "--input", str(cases), "--output", str(out)]
    # in a fresh process: the plan counts what the process already holds, and a test session holds a lot
    proc, _, _ = run_limited(*args, "--max-memory", "800M")
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    assert len(failed) == 1 and "big.nii.gz: needs about" in failed[0]
    assert "more than the budget of 800.0 MiB (--max-memory)" in failed[0]
    assert sorted(p.name for p in out.iterdir()) == ["good_seg.nii.gz", "qc.json"]  # qc.json: the refusal's reason


@pytest.mark.parametrize(
    ("changes", "extra", "expect_code", "expect"),
    [
        ({"preprocessing__pixdim": [0.1, 0.1, 0.1]}, (), 1, "5120x5120x3000"),  # 1 mm scan at 0.1 mm: 79 G voxels
        ({"patch_size": [256, 256, 256]}, ("--max-memory", "2G"), 1, "more than the budget of 2.0 GiB"),
        ({"network__features": [1024, 1024, 1024, 1024]}, ("--max-memory", "2G"), 2, "for weights alone"),
    ],
    ids=["spacing", "window", "width"],
)
def test_a_bundle_rerendered_with_absurd_sizes_is_refused_quickly(tmp_path, changes, extra, expect_code, expect):
    bundle = rerendered(tmp_path, **changes)
    cases = tmp_path / "cases"
    cases.mkdir()
    promising_nifti_gz(cases / "ct.nii.gz", (512, 512, 300), dtype="int16")
    proc, rss, seconds = run_limited(
        "predict", "--quiet", "--bundle", str(bundle), "--input", str(cases), "--output", str(tmp_path / "out"), *extra
    )
    assert proc.returncode == expect_code, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    out = tmp_path / "out"
    assert not out.exists() or [p.name for p in out.iterdir()] == ["qc.json"]  # no mask, only the refusal's record
    assert rss < 1 << 30, f"peak RSS {rss / 2**20:.0f} MiB"
    assert seconds < 10
