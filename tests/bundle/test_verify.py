"""``unet-med bundle verify``: the shipped bundles pass every check; a bundle that is not recognised stops before
the run stage (the planted-attack corpus is in test_recognize.py); the run stage uses only the receiver's code."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from unet_med.bundle.verify import verify_bundle
from unet_med.cli import main

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unet"
SCHEMA = REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"
LATER = ["network in/out", "torchscript", "onnx", "end to end"]


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
    for name in ("recognition", "metadata", "network in/out", "torchscript", "onnx", "end to end"):
        assert f"PASS  {name}" in out
    assert "exported here" in out  # the exports are the receiver's own
    print(f"verify bundles/unet: {seconds:.1f}s")


def test_packed_zip_passes(packed):
    report = verify_bundle(packed, schema=_schema(), onnx=False)
    assert report.ok, report.format()
    assert _status(report)["unpack"] == "PASS" and _status(report)["manifest"] == "PASS"
    assert _status(report)["recognition"] == "PASS"


def test_tampered_weights_are_refused(packed, tmp_path, tamper):
    report = verify_bundle(tamper(packed, tmp_path / "tampered.zip"))
    assert not report.ok and _status(report) == {"unpack": "FAIL"}
    assert "models/model.pt" in _details(report, "unpack")
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


def test_a_bad_version_fails_the_metadata_and_recognition(bundle_copy):
    meta = bundle_copy / "configs" / "metadata.json"
    content = json.loads(meta.read_text())
    content["version"] = "0.2"
    meta.write_text(json.dumps(content))
    report = verify_bundle(bundle_copy, schema=_schema(), onnx=False)
    assert _status(report)["metadata"] == "FAIL" and "not semver" in _details(report, "metadata")
    assert _status(report)["recognition"] == "FAIL" and "configs/metadata.json: version" in _details(
        report, "recognition"
    )
    assert all(_status(report)[n] == "SKIP" for n in LATER)
    assert "--trust-bundle-code" in _details(report, "end to end")


def test_trusting_custom_code_runs_the_run_stage_but_still_reports_it(bundle_copy):
    config = bundle_copy / "configs" / "inference.json"
    content = json.loads(config.read_text())
    content["overlap"] = 0.25  # a hand edit: harmless, but not what the template makes
    config.write_text(json.dumps(content, indent=4))
    report = verify_bundle(bundle_copy, onnx=False, trust_bundle_code=True)
    assert _status(report)["recognition"] == "FAIL" and "configs/inference.json: overlap" in report.format()
    assert _status(report)["end to end"] == "PASS", report.format()


def test_a_2d_microscopy_bundle_passes_with_a_png_end_to_end(shared_dir):
    bundle = REPO / "bundles" / "em_membranes"
    if not (bundle / "models" / "model.pt").is_file():
        pytest.skip("em_membranes has no trained weights")
    schema = shared_dir / "schemas" / "meta_schema_20240725.json"
    report = verify_bundle(bundle, schema=schema if schema.is_file() else None, onnx=False)
    assert report.ok, report.format()
    assert "synthetic" in _details(report, "end to end") and "PNG" in _details(report, "end to end")
