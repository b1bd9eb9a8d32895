"""Integrity on every run: predict and ``bundle run`` compare a received bundle with its manifest each time, and with
pinned keys (``UNET_MED_TRUSTED_KEYS``) check its signature too."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from unet_med.bundle.integrity import TRUSTED_KEYS_ENV, check_integrity
from unet_med.bundle.manifest import MANIFEST, SIGNATURE, BundleError, sha256_file
from unet_med.bundle.pack import pack_bundle, unpack_bundle
from unet_med.bundle.recognize import require_recognized
from unet_med.bundle.signing import generate_key
from unet_med.cli import main


@pytest.fixture
def received(packed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    return unpack_bundle(packed, tmp_path / "received" / "unet")


@pytest.fixture
def case(tmp_path: Path) -> Path:
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 24)).astype(np.float32), np.eye(4)), path)
    return path


def _replace_weights(bundle: Path) -> None:
    """Weights of the right keys and shapes (recognition passes them), but not the ones that were sent."""
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    state = state.get("model", state)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, bundle / "models" / "model.pt")


def test_replaced_weights_after_unpacking_are_refused_by_predict_and_bundle_run(received, case, tmp_path, capsys):
    assert require_recognized(received).ok
    _replace_weights(received)
    out = tmp_path / "masks"
    assert main(["predict", "--bundle", str(received), "--input", str(case), "--output", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "models/model.pt changed after the bundle was packed" in err
    assert "unpack the zip again" in err
    assert main(["bundle", "run", str(received), "inferring", "--input", str(case), "--output_dir", str(out)]) == 2
    assert "models/model.pt: changed after packing" in capsys.readouterr().err
    assert not out.exists()


def test_trusting_code_does_not_accept_a_changed_file(received):
    _replace_weights(received)
    with pytest.raises(BundleError, match="changed after the bundle was packed"):
        require_recognized(received, trust_bundle_code=True)


def test_added_files_are_refused_but_local_training_outputs_are_not(received):
    (received / "runs" / "train").mkdir(parents=True)
    (received / "runs" / "train" / "log.txt").write_text("x")
    (received / "models" / "last.pt").write_bytes(b"x")
    assert check_integrity(received, ignore=("runs", "models/last.pt")).problems == []
    (received / "docs" / "extra.md").write_text("added")
    with pytest.raises(BundleError) as info:
        require_recognized(received, weights=False)
    assert "docs/extra.md: not in manifest.json (added after packing)" in info.value.problems


def test_a_bundle_without_manifest_is_checked_by_recognition_only(bundle_copy, monkeypatch):
    monkeypatch.setenv(TRUSTED_KEYS_ENV, "/nonexistent/keys")
    integrity = check_integrity(bundle_copy, trusted_keys="/nonexistent/keys")
    assert not integrity.manifest and integrity.problems == []


def test_integrity_hashes_the_bytes_recognition_read(received):
    data = (received / "configs" / "inference.json").read_bytes()
    assert check_integrity(received, {"configs/inference.json": data}).changed == []
    changed = check_integrity(received, {"configs/inference.json": data + b" "})
    assert changed.changed == ["configs/inference.json"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    pinned = tmp_path / "trusted-keys"
    pinned.mkdir()
    generate_key(tmp_path / "sender.pem", pinned / "sender.pub.pem")
    generate_key(tmp_path / "stranger.pem", tmp_path / "stranger.pub.pem")
    return {"pinned": pinned, "sender": tmp_path / "sender.pem", "stranger": tmp_path / "stranger.pem"}


def _received(bundle: Path, tmp_path: Path, name: str, **sign: str | Path) -> Path:
    zip_path = pack_bundle(bundle, tmp_path / f"{name}.zip", **sign)
    return unpack_bundle(zip_path, tmp_path / name)


def test_pinned_keys_require_a_signature_by_one_of_them(bundle_copy, keys, tmp_path, monkeypatch):
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["pinned"]))
    signed = _received(bundle_copy, tmp_path, "signed", key=keys["sender"], signer="A. Smith, St Mary's")
    assert require_recognized(signed, weights=False).signer == "A. Smith, St Mary's"

    unsigned = _received(bundle_copy, tmp_path, "unsigned")
    with pytest.raises(BundleError, match=f"unsigned: this site pins senders' keys \\({TRUSTED_KEYS_ENV}="):
        require_recognized(unsigned, weights=False)
    stranger = _received(bundle_copy, tmp_path, "stranger", key=keys["stranger"], signer="Someone Else")
    with pytest.raises(BundleError, match="not a trusted key"):
        require_recognized(stranger, weights=False)

    # a manifest rewritten to match replaced weights no longer carries the sender's signature
    _replace_weights(signed)
    manifest = json.loads((signed / MANIFEST).read_text())
    weights = signed / "models" / "model.pt"
    manifest["files"]["models/model.pt"] = {"sha256": sha256_file(weights), "size": weights.stat().st_size}
    (signed / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(BundleError, match="does not verify"):
        require_recognized(signed, weights=False)
    monkeypatch.delenv(TRUSTED_KEYS_ENV)
    assert require_recognized(signed, weights=False).ok  # without pinned keys only the manifest is compared


def test_a_signature_without_its_manifest_is_refused(received, keys):
    (received / SIGNATURE).write_text("{}")
    (received / MANIFEST).unlink()
    assert check_integrity(received).problems == [f"{SIGNATURE} without {MANIFEST}: the manifest it signs was removed"]


def test_checking_a_packed_bundle_costs_little_next_to_loading_it(received):
    """The check that runs on every predict: hashing every file (5 MB here)."""
    start = time.perf_counter()
    assert check_integrity(received).problems == []
    assert time.perf_counter() - start < 1.0


def test_an_unchanged_received_bundle_runs_quietly(received, case, tmp_path):
    """The gate passes an unpacked bundle as it was sent, and ``bundle run`` says nothing about the logging file
    it deliberately does not apply (MONAI's "Logging file is set to False" warning)."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("monai.bundle.workflows").addHandler(handler)
    out = tmp_path / "masks"
    args = ["bundle", "run", str(received), "inferring", "--input", str(case), "--output_dir", str(out)]
    try:
        assert main([*args, "--device", "cpu"]) == 0
    finally:
        logging.getLogger("monai.bundle.workflows").removeHandler(handler)
    assert len(list(out.rglob("*.nii.gz"))) == 1
    assert not [r for r in records if r.startswith("Logging file is set to False")], records
