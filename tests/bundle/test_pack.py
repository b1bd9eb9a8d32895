"""Packing and unpacking: the manifest round trip, and every unsafe zip refused before anything is written."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest

from unet_med.bundle.manifest import MANIFEST, BundleError, check_manifest
from unet_med.bundle.pack import pack_bundle, unpack_bundle


def _write_zip(path: Path, entries: dict[str, bytes], manifest: bool = True, links: tuple[str, ...] = ()) -> Path:
    """A zip of ``entries`` with a manifest that lists them all (so only the check under test can fail)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            mode = stat.S_IFLNK | 0o777 if name in links else stat.S_IFREG | 0o644
            info.external_attr = mode << 16
            zf.writestr(info, data)
        if manifest:
            files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in entries.items()}
            zf.writestr(MANIFEST, json.dumps({"manifest_version": 1, "version": "0.1.0", "files": files}))
    return path


def test_packed_zip_holds_exports_and_a_manifest_of_every_file(packed):
    with zipfile.ZipFile(packed) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read(MANIFEST))
    expected = {"LICENSE", "docs/README.md", "configs/metadata.json", "configs/train.json", "configs/logging.conf"}
    expected |= {"configs/inference_torchscript.json", "models/model.pt", "models/model.ts", "models/model.onnx"}
    assert expected <= names
    assert not any(n.startswith("runs/") or n.endswith("last.pt") for n in names)
    assert set(manifest["files"]) == names - {MANIFEST}
    assert manifest["version"] == json.loads((Path("bundles/unet/configs/metadata.json")).read_text())["version"]
    with zipfile.ZipFile(packed) as zf:
        weights = zf.read("models/model.pt")
    assert manifest["files"]["models/model.pt"]["sha256"] == hashlib.sha256(weights).hexdigest()


def test_unpack_round_trip_matches_the_manifest(packed, tmp_path):
    out = unpack_bundle(packed, tmp_path / "received")
    assert check_manifest(out) == []
    assert not list(tmp_path.glob(".*part*")), "temporary folder left behind"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "'..' paths"),
        ("configs/../../evil.txt", "'..' paths"),
        ("/tmp/evil.txt", "absolute paths"),
        ("C:/evil.txt", "absolute paths"),
        ("configs\\..\\..\\evil.txt", "backslashes"),
    ],
)
def test_unsafe_paths_are_refused_before_writing(tmp_path, name, reason):
    archive = _write_zip(tmp_path / "evil.zip", {"configs/metadata.json": b"{}", name: b"payload"})
    dest = tmp_path / "work" / "received"
    with pytest.raises(BundleError, match=reason):
        unpack_bundle(archive, dest)
    assert not dest.exists() and not (tmp_path / "work").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_entries_are_refused(tmp_path):
    archive = _write_zip(
        tmp_path / "link.zip",
        {"configs/metadata.json": b"{}", "models/model.pt": b"/etc/passwd"},
        links=("models/model.pt",),
    )
    with pytest.raises(BundleError, match="links are not allowed"):
        unpack_bundle(archive, tmp_path / "received")
    assert not (tmp_path / "received").exists()


def test_unlisted_and_missing_files_are_refused(tmp_path):
    archive = tmp_path / "extra.zip"
    _write_zip(archive, {"configs/metadata.json": b"{}"})
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("configs/extra.json", b'{"x": "$__import__(\'os\')"}')
    with pytest.raises(BundleError, match="not listed in the manifest"):
        unpack_bundle(archive, tmp_path / "received")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        unpack_bundle(_write_zip(tmp_path / "bare.zip", {"a.json": b"{}"}, manifest=False), tmp_path / "received")
    assert not (tmp_path / "received").exists()


def test_tampered_weights_are_refused_before_writing(packed, tmp_path, tamper):
    archive = tamper(packed, tmp_path / "tampered.zip")
    with pytest.raises(BundleError, match=r"models/model\.pt.*sha256 does not match"):
        unpack_bundle(archive, tmp_path / "received")
    assert not (tmp_path / "received").exists()


def test_unpack_refuses_a_non_empty_destination(packed, tmp_path):
    (tmp_path / "received").mkdir()
    (tmp_path / "received" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        unpack_bundle(packed, tmp_path / "received")


def test_pack_refuses_an_unsafe_bundle(bundle_copy, tmp_path):
    config = bundle_copy / "configs" / "evaluate.json"
    content = json.loads(config.read_text())
    content["run"] = ["$__import__('os').system('id')"]
    config.write_text(json.dumps(content))
    with pytest.raises(BundleError, match="safety scan failed"):
        pack_bundle(bundle_copy, tmp_path / "out.zip", onnx=False)
    assert not (tmp_path / "out.zip").exists()
