"""``unet-med bundle verify``: the reference bundle passes; planted attacks are refused and nothing runs.

Each attack carries a payload that would create a canary file if any of it were evaluated; the test checks the
refusal and that the canary does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from unet_med.bundle.verify import verify_bundle
from unet_med.cli import main

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unet"
SCHEMA = REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"
LATER = ["configs", "network in/out", "torchscript", "onnx", "end to end"]


def _schema() -> Path | None:
    return SCHEMA if SCHEMA.is_file() else None


def _status(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _details(report, name: str) -> str:
    check = next(c for c in report.checks if c.name == name)
    return "\n".join([check.summary, *check.details])


def test_reference_bundle_passes_every_check(capsys):
    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    start = time.perf_counter()
    schema = _schema()
    code = main(["bundle", "verify", str(BUNDLE), *(["--schema", str(schema)] if schema else [])])
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert code == 0, out
    assert "OK: every check passed" in out
    for name in ("safety scan", "weights", "metadata", "configs", "network in/out", "torchscript", "onnx"):
        assert f"PASS  {name}" in out
    assert "PASS  end to end" in out
    print(f"verify bundles/unet: {seconds:.1f}s")


def test_packed_zip_passes_with_its_own_exports(packed):
    report = verify_bundle(packed, schema=_schema())
    assert report.ok, report.format()
    assert _status(report)["unpack"] == "PASS" and _status(report)["manifest"] == "PASS"
    assert "models/model.ts" in _details(report, "torchscript")
    assert "models/model.onnx" in _details(report, "onnx")
    assert "inference_torchscript.json: mask" in _details(report, "end to end")


def _set(bundle: Path, config: str, key: str, value) -> None:
    path = bundle / "configs" / config
    content = json.loads(path.read_text())
    content[key] = value
    path.write_text(json.dumps(content))


def _assert_refused_by_scan(report, canary: Path, where: str) -> None:
    assert not report.ok
    status = _status(report)
    assert status["safety scan"] == "FAIL"
    assert all(status[n] == "SKIP" for n in LATER), report.format()
    assert where in _details(report, "safety scan"), report.format()
    assert not canary.exists(), "the payload ran"


def test_dollar_import_os_system_is_refused(bundle_copy, tmp_path):
    canary = tmp_path / "canary"
    payload = f"$__import__('os').system('touch {canary}')"
    # the payload is live: evaluating it creates the canary
    from monai.bundle import ConfigParser

    ConfigParser({"x": payload}).get_parsed_content("x")
    assert canary.exists()
    canary.unlink()
    _set(bundle_copy, "inference.json", "network", payload)
    _assert_refused_by_scan(verify_bundle(bundle_copy), canary, "configs/inference.json: network: ")


def test_subprocess_popen_target_is_refused(bundle_copy, tmp_path):
    canary = tmp_path / "canary"
    _set(bundle_copy, "train.json", "network_def", {"_target_": "subprocess.Popen", "args": ["touch", str(canary)]})
    _assert_refused_by_scan(verify_bundle(bundle_copy), canary, "configs/train.json: network_def#_target_: ")


@pytest.mark.parametrize(
    "handler",
    [
        "class=subprocess.Popen\nargs=(['touch', '{canary}'],)",  # an arbitrary class constructed by fileConfig
        "class=FileHandler\nargs=('{canary}', 'w')",  # a file written anywhere (MONAI 1.6.1 allows this one)
    ],
)
def test_logging_conf_constructing_other_classes_is_refused(bundle_copy, tmp_path, handler):
    canary = tmp_path / "canary"
    conf = bundle_copy / "configs" / "logging.conf"
    text = conf.read_text().replace("class=StreamHandler\nlevel=INFO", "level=INFO")
    text = text.replace("args=(sys.stdout,)", handler.format(canary=canary))
    conf.write_text(text)
    _assert_refused_by_scan(verify_bundle(bundle_copy), canary, "[handler_consoleHandler] class")


class _Payload:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def test_pickle_payload_in_weights_is_refused(bundle_copy, tmp_path):
    canary = tmp_path / "canary"
    weights = bundle_copy / "models" / "model.pt"
    state = torch.load(weights, weights_only=True)
    state["payload"] = _Payload(canary)
    torch.save(state, weights)
    report = verify_bundle(bundle_copy)
    assert not report.ok
    assert _status(report)["weights"] == "FAIL"
    assert "weights-only" in _details(report, "weights")
    assert all(_status(report)[n] == "SKIP" for n in LATER)
    assert not canary.exists(), "the pickle payload ran"
    torch.load(weights, weights_only=False)  # the payload is live: a plain torch.load runs it
    assert canary.exists()


def test_tampered_weights_are_refused(packed, tmp_path, tamper):
    report = verify_bundle(tamper(packed, tmp_path / "tampered.zip"))
    assert not report.ok and _status(report) == {"unpack": "FAIL"}
    assert "models/model.pt" in _details(report, "unpack")
    # and in an unpacked folder, against its manifest
    from unet_med.bundle.pack import unpack_bundle

    folder = unpack_bundle(packed, tmp_path / "received")
    with (folder / "models" / "model.pt").open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    report = verify_bundle(folder)
    assert _status(report)["manifest"] == "FAIL" and all(_status(report)[n] == "SKIP" for n in LATER)
    assert "models/model.pt: sha256 does not match" in _details(report, "manifest")


def test_bad_version_and_unresolved_reference_fail(bundle_copy):
    meta = bundle_copy / "configs" / "metadata.json"
    content = json.loads(meta.read_text())
    content["version"] = "0.2"
    meta.write_text(json.dumps(content))
    _set(bundle_copy, "evaluate.json", "eval_dir", "@no_such_item")
    report = verify_bundle(bundle_copy, schema=_schema(), onnx=False)
    assert _status(report)["metadata"] == "FAIL" and "not semver" in _details(report, "metadata")
    assert _status(report)["configs"] == "FAIL" and "@no_such_item" in _details(report, "configs")


def test_receiving_site_without_unet_med_runs_inference(packed, tmp_path, oblique_volume):
    """A site with monai, torch and nibabel but no unet_med runs the packed TorchScript bundle; the mask lands in
    the input's geometry and matches the mask of the unet_med inference config (up to argmax ties)."""
    from monai.bundle import ConfigWorkflow

    from unet_med.bundle.pack import unpack_bundle

    bundle = unpack_bundle(packed, tmp_path / "received")
    # oblique, anisotropic, LPS, odd size
    source = oblique_volume(
        tmp_path / "scan.nii.gz",
        shape=(37, 29, 13),
        zooms=(0.9, 1.1, 3.0),
        angle_deg=9.0,
        origin=(21.0, -7.5, 3.0),
        seed=1,
    )
    stub = tmp_path / "stub" / "unet_med"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('unet_med is not installed at this site')\n")
    env = {**os.environ, "PYTHONPATH": str(stub.parent), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    site = tmp_path / "site"
    site.mkdir()
    probe = subprocess.run([sys.executable, "-c", "import unet_med"], cwd=site, env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "not installed at this site" in probe.stderr
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "inferring",
        "--config_file",
        str(bundle / "configs" / "inference_torchscript.json"),
        "--bundle_root",
        str(bundle),
        "--input",
        str(tmp_path / "scan.nii.gz"),
        "--output_dir",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    ]
    result = subprocess.run(command, cwd=site, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    mask = nib.load(tmp_path / "out" / "scan_seg.nii.gz")
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
    # the same volume through the unet_med inference config gives the same mask
    wf = ConfigWorkflow(
        config_file=[str(bundle / "configs" / "train.json"), str(bundle / "configs" / "inference.json")],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        run_id="inferring",
        bundle_root=str(bundle),
        input=str(tmp_path / "scan.nii.gz"),
        output_dir=str(tmp_path / "out_unet_med"),
        device="cpu",
    )
    wf.initialize()
    wf.run()
    reference = nib.load(tmp_path / "out_unet_med" / "scan_seg.nii.gz")
    agree = np.mean(np.asarray(mask.dataobj) == np.asarray(reference.dataobj))
    assert agree > 0.999, f"TorchScript and unet_med masks agree on only {agree:.2%} of voxels"  # float noise only


def test_torchscript_config_mirrors_the_base_config():
    ts = json.loads((BUNDLE / "configs" / "inference_torchscript.json").read_text())
    base = json.loads((BUNDLE / "configs" / "train.json").read_text())
    assert ts["pixdim"] == base["pixdim"] and ts["patch_size"] == base["patch_size"]
    assert base["modality"] == "mri"  # the MONAI-only preprocessing in inference_torchscript.json is the MRI preset


def test_a_2d_microscopy_bundle_passes_with_a_png_end_to_end(shared_dir):
    bundle = Path(__file__).resolve().parents[2] / "bundles" / "em_membranes"
    if not (bundle / "models" / "model.pt").is_file():
        pytest.skip("em_membranes has no trained weights")
    schema = shared_dir / "schemas" / "meta_schema_20240725.json"
    report = verify_bundle(bundle, schema=schema if schema.is_file() else None, onnx=False)
    assert report.ok, report.format()
    assert "synthetic PNG" in report.format()
