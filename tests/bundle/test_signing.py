"""Signatures: a signed bundle passes with its signer named; a change, an addition, a removal, an untrusted key, a
missing signature and a forged manifest are each refused with a one-line reason."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from unet_med.bundle.manifest import MANIFEST, SIGNATURE, BundleError
from unet_med.bundle.pack import unpack_bundle
from unet_med.bundle.signing import (
    SignatureReport,
    generate_key,
    key_id,
    require_signature,
    sign_bundle,
    verify_signature,
)

SIGNER = "A. Smith, St Mary's Hospital"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path | str]:
    """A sender's key pair, its public key pinned in ``trusted/``, and a stranger's key pair (not pinned)."""
    (tmp_path / "trusted").mkdir()
    sender = generate_key(tmp_path / "sender.pem", tmp_path / "trusted" / "sender.pub.pem")
    stranger = generate_key(tmp_path / "stranger.pem", tmp_path / "stranger.pub.pem")
    return {
        "private": tmp_path / "sender.pem",
        "trusted": tmp_path / "trusted",
        "id": sender,
        "stranger": tmp_path / "stranger.pem",
        "stranger_id": stranger,
    }


@pytest.fixture
def signed(bundle_copy: Path, keys) -> Path:
    sign_bundle(bundle_copy, keys["private"], SIGNER)
    return bundle_copy


def _refusal(bundle: Path, keys) -> str:
    """The one-line message of :func:`require_signature`'s refusal."""
    with pytest.raises(BundleError) as info:
        require_signature(bundle, keys["trusted"])
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_generate_key_writes_an_owner_only_private_key_and_a_pem_public_key(tmp_path):
    kid = generate_key(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    public = serialization.load_pem_public_key((tmp_path / "k.pub.pem").read_bytes())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid == key_id(public) == hashlib.sha256(raw).hexdigest()[:16]
    assert b"PRIVATE" not in (tmp_path / "k.pub.pem").read_bytes()
    assert not list(tmp_path.glob(".*part*")), "temporary file left behind"
    with pytest.raises(FileExistsError):
        generate_key(tmp_path / "k.pem", tmp_path / "other.pub.pem")


def test_sign_and_verify_round_trip_names_the_signer(signed, keys):
    manifest = json.loads((signed / MANIFEST).read_bytes())
    assert set(manifest["files"]) == _files(signed) - {MANIFEST, SIGNATURE}  # every file, LICENSE included
    assert manifest["signed_by"] == {"signer": SIGNER, "key_id": keys["id"]}
    signature = json.loads((signed / SIGNATURE).read_bytes())
    assert signature["signature_version"] == 1 and signature["algorithm"] == "ed25519"
    assert signature["key_id"] == keys["id"] and signature["signer"] == SIGNER
    assert signature["manifest_sha256"] == hashlib.sha256((signed / MANIFEST).read_bytes()).hexdigest()

    report = require_signature(signed, keys["trusted"])
    assert report == SignatureReport(ok=True, signer=SIGNER, key_id=keys["id"], problems=[])
    assert SIGNER in report.format() and keys["id"] in report.format()
    sign_bundle(signed, keys["private"], SIGNER)  # re-signing refreshes, and does not list its own files
    assert verify_signature(signed, keys["trusted"]).ok


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("edit", r"models/model\.pt'?: sha256 differs"),
        ("append", r"configs/inference\.json'?: \d+ bytes, signed as \d+"),
        ("add", r"configs/extra\.json'?: not in the signed manifest"),
        ("add hidden", r"\.cache/x'?: not in the signed manifest"),
        ("remove", r"docs/README\.md'?: in the signed manifest but missing"),
    ],
)
def test_a_change_after_signing_is_refused(signed, keys, change, reason):
    if change == "edit":
        data = bytearray((signed / "models" / "model.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size: only the sha256 can tell
        (signed / "models" / "model.pt").write_bytes(bytes(data))
    elif change == "append":
        with (signed / "configs" / "inference.json").open("a") as f:
            f.write(" ")
    elif change == "add":
        (signed / "configs" / "extra.json").write_text('{"run": "$print(1)"}')
    elif change == "add hidden":
        (signed / ".cache").mkdir()
        (signed / ".cache" / "x").write_bytes(b"x")
    else:
        (signed / "docs" / "README.md").unlink()
    report = verify_signature(signed, keys["trusted"])
    assert not report.ok and report.signed
    assert any(re.search(reason, p) for p in report.problems), report.problems
    assert "refused" in _refusal(signed, keys)


def test_a_key_that_is_not_trusted_is_refused_by_its_key_id(bundle_copy, keys):
    sign_bundle(bundle_copy, keys["stranger"], SIGNER)  # a stranger claims the same name
    message = _refusal(bundle_copy, keys)
    assert f"signed with key {keys['stranger_id']}, which is not a trusted key" in message
    assert keys["id"] in message  # and says which keys are trusted
    with pytest.raises(BundleError, match=keys["stranger_id"]):
        require_signature(bundle_copy, keys["trusted"], allow_unsigned=True)


def test_unsigned_is_refused_unless_allowed(bundle_copy, keys, caplog):
    report = verify_signature(bundle_copy, keys["trusted"])
    assert not report.ok and not report.signed and report.problems[0].startswith("unsigned")
    assert "unsigned" in _refusal(bundle_copy, keys)
    accepted = require_signature(bundle_copy, keys["trusted"], allow_unsigned=True)
    assert not accepted.ok and not accepted.signed
    assert "unsigned, accepted" in caplog.text


def test_a_forged_manifest_is_refused(signed, keys):
    """The attacker swaps the weights and rewrites their checksum (and the signature's manifest_sha256), but
    cannot re-sign without the sender's private key."""
    weights = signed / "models" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-8] + b"PAYLOAD!")
    manifest = json.loads((signed / MANIFEST).read_bytes())
    manifest["files"]["models/model.pt"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    (signed / MANIFEST).write_bytes(data)
    signature = json.loads((signed / SIGNATURE).read_bytes())
    signature["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    (signed / SIGNATURE).write_text(json.dumps(signature))
    message = _refusal(signed, keys)
    assert f"does not verify with trusted key {keys['id']}" in message


def test_the_signer_name_is_bound_by_the_signature(signed, keys):
    signature = json.loads((signed / SIGNATURE).read_bytes())
    signature["signer"] = "Chief of Radiology, Elsewhere"
    (signed / SIGNATURE).write_text(json.dumps(signature))
    assert "differ from the signed manifest" in _refusal(signed, keys)


def test_a_signed_manifest_may_not_list_paths_outside_the_bundle(bundle_copy, keys):
    """Even the trusted sender's manifest is read as data: '..' and absolute paths are refused, never opened."""
    private = serialization.load_pem_private_key(Path(keys["private"]).read_bytes(), password=None)
    entry = {"sha256": "0" * 64, "size": 1}
    files = {"../outside.txt": entry, "/etc/passwd": entry}
    manifest = {"manifest_version": 1, "files": files, "signed_by": {"signer": SIGNER, "key_id": keys["id"]}}
    data = json.dumps(manifest).encode()
    shutil.rmtree(bundle_copy)
    bundle_copy.mkdir()
    (bundle_copy / MANIFEST).write_bytes(data)
    document = {
        "signature_version": 1,
        "algorithm": "ed25519",
        "key_id": keys["id"],
        "signer": SIGNER,
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(private.sign(data)).decode(),
    }
    (bundle_copy / SIGNATURE).write_text(json.dumps(document))
    report = verify_signature(bundle_copy, keys["trusted"])
    assert sum("path outside the bundle" in p for p in report.problems) == 2, report.problems


def test_oversized_and_malformed_signature_files_are_refused_unparsed(signed, keys):
    manifest = signed / MANIFEST
    manifest.write_bytes(b" " * (4 << 20) + manifest.read_bytes())  # over the 4 MiB limit
    assert f"{MANIFEST}: {manifest.stat().st_size} bytes, more than 4194304" in _refusal(signed, keys)
    (signed / SIGNATURE).write_text("[" * 100_000)
    assert f"{SIGNATURE}: 100000 bytes, more than 65536" in _refusal(signed, keys)
    (signed / SIGNATURE).write_text("[" * 50_000)  # small, but nested past the JSON parser's stack
    assert "not valid JSON" in _refusal(signed, keys)


def test_links_are_refused_when_signing_and_when_verifying(signed, keys, tmp_path):
    link = signed / "docs" / "link.md"
    os.symlink(signed / "docs" / "README.md", link)
    assert "links are not allowed" in _refusal(signed, keys)
    with pytest.raises(BundleError, match="refusing to sign"):
        sign_bundle(signed, keys["private"], SIGNER)


def test_a_missing_trusted_keys_folder_refuses(signed, tmp_path):
    report = verify_signature(signed, tmp_path / "nowhere")
    assert not report.ok and "does not exist" in report.problems[0]
    (tmp_path / "empty").mkdir()
    assert "no Ed25519 public keys" in verify_signature(signed, tmp_path / "empty").problems[0]


def _zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(folder).as_posix())
    return out


def test_a_zip_is_verified_in_place_and_unpacks_with_its_signature(signed, keys, tmp_path):
    archive = _zip_folder(signed, tmp_path / "signed.zip")
    report = verify_signature(archive, keys["trusted"])
    assert report.ok and report.signer == SIGNER, report.problems
    received = unpack_bundle(archive, tmp_path / "received")  # signature.json is the one unlisted file allowed
    assert (received / SIGNATURE).is_file()
    assert require_signature(received, keys["trusted"]).ok

    (signed / "configs" / "extra.json").write_text("{}")
    extra = _zip_folder(signed, tmp_path / "extra.zip")
    assert "configs/extra.json" in verify_signature(extra, keys["trusted"]).problems[0]
