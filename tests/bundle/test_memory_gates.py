"""The memory plan where a bundle runs its own workflow: ``verify`` builds no network that does not fit, and
``bundle run ... inferring`` plans its cases before anything is built."""

from __future__ import annotations

from tests.cli.test_predict_memory import rerendered
from tests.hostile import promising_nifti_gz
from unet_med.bundle.verify import verify_bundle
from unet_med.cli import main

LATER = ["network in/out", "torchscript", "onnx", "end to end"]


def test_verify_builds_no_network_whose_weights_exceed_the_memory(bundle_copy, monkeypatch):
    import unet_med.inference.memory_plan as memory_plan

    monkeypatch.setattr(memory_plan, "default_budget", lambda device="cpu": (64 << 20, None))
    report = verify_bundle(bundle_copy, onnx=False)
    status = {c.name: c.status for c in report.checks}
    assert status["recognition"] == "PASS" and status["memory"] == "FAIL"
    assert all(status[name] == "SKIP" for name in LATER)
    memory = next(c for c in report.checks if c.name == "memory")
    assert "for weights alone" in memory.summary and "the budget of 64.0 MiB" in memory.summary


def test_bundle_run_inferring_refuses_a_case_that_cannot_fit(bundle_copy, tmp_path, capsys):
    bundle = rerendered(tmp_path, preprocessing__pixdim=[0.1, 0.1, 0.1])
    scan = promising_nifti_gz(tmp_path / "ct.nii.gz", (512, 512, 300), dtype="int16")
    out = tmp_path / "out"
    code = main(["bundle", "run", str(bundle), "inferring", "--input", str(scan), "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "ct.nii.gz: needs about" in err and "5120x5120x3000" in err
    assert not out.exists()


def test_bundle_run_inferring_checks_the_header_first(bundle_copy, tmp_path, capsys):
    scan = promising_nifti_gz(tmp_path / "hostile.nii.gz", (2048, 2048, 512))
    code = main(["bundle", "run", str(bundle_copy), "inferring", "--input", str(scan), "--output_dir", str(tmp_path)])
    assert code == 2 and "more than the limit of 1,073,741,824 voxels" in capsys.readouterr().err
