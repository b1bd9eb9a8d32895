"""Packing and unpacking: the manifest round trip, and every unsafe zip refused before anything is written."""

from __future__ import annotations

import hashlib
import json
import stat
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from unet_med.bundle import pack
from unet_med.bundle.manifest import MANIFEST, BundleError, check_manifest
from unet_med.bundle.pack import pack_bundle, unpack_bundle
from unet_med.bundle.zip_entries import read_entry


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


def test_packed_zip_holds_data_only_and_a_manifest_of_every_file(packed):
    with zipfile.ZipFile(packed) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read(MANIFEST))
    expected = {"LICENSE", "docs/README.md", "configs/metadata.json", "configs/train.json", "configs/logging.conf"}
    expected |= {"configs/task.json", "configs/inference.json", "models/model.pt"}
    assert expected <= names
    assert not any(n.endswith((".ts", ".onnx", ".py")) for n in names)  # a receiver never runs a sender's model file
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


def test_pack_refuses_a_bundle_with_custom_code(bundle_copy, tmp_path):
    config = bundle_copy / "configs" / "evaluate.json"
    content = json.loads(config.read_text())
    content["run"] = ["$__import__('os').system('id')"]
    config.write_text(json.dumps(content))
    with pytest.raises(BundleError, match="--trust-bundle-code") as info:
        pack_bundle(bundle_copy, tmp_path / "out.zip")
    assert any("configs/evaluate.json: run#0" in p for p in info.value.problems)
    assert not (tmp_path / "out.zip").exists()


# Bounds on a received zip: every refusal is one line, quick, and leaves nothing behind.


def _nothing_left(root: Path, dest: Path) -> None:
    assert not dest.exists(), f"{dest} was created"
    leftovers = [p for p in root.rglob("*") if ".part" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _refused(archive: Path, dest: Path, match: str) -> str:
    """Unpacks ``archive`` expecting a one-line refusal matching ``match``; returns the message."""
    with pytest.raises(BundleError, match=match) as info:
        unpack_bundle(archive, dest)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and len(message) < 400, message
    _nothing_left(archive.parent, dest)
    return message


def _deflated_zip(path: Path, name: str, size: int, declared: int | None = None) -> Path:
    """A zip holding ``size`` zero bytes as ``name`` (deflated, streamed: about 1,000x smaller) and a manifest that
    lists the entry as ``declared`` bytes (default ``size``) with the sha256 of that many zeros."""
    declared = size if declared is None else declared
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w") as f:  # deflated, as the archive
            for start in range(0, size, 1 << 20):
                f.write(bytes(min(1 << 20, size - start)))
        digest = hashlib.sha256(bytes(declared)).hexdigest()
        zf.writestr(MANIFEST, json.dumps({"files": {name: {"sha256": digest, "size": declared}}}))
    return path


def _patch_header(path: Path, name: str, offset_local: int, offset_central: int, value: int) -> None:
    """Overwrites one 4-byte field of ``name``'s local header and its central directory record."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        central = zf.start_dir
        while data[central : central + 4] == b"PK\x01\x02":
            n, m, k = struct.unpack_from("<HHH", data, central + 28)
            if data[central + 46 : central + 46 + n].decode() == name:
                struct.pack_into("<I", data, central + offset_central, value)
            central += 46 + n + m + k
    struct.pack_into("<I", data, info.header_offset + offset_local, value)
    path.write_bytes(bytes(data))


def test_a_zip_bomb_is_refused_from_its_declared_ratio(tmp_path):
    archive = _deflated_zip(tmp_path / "bomb.zip", "models/model.pt", 64 << 20)
    assert archive.stat().st_size < 200_000
    start = time.perf_counter()
    message = _refused(archive, tmp_path / "work" / "received", r"\d+x > 200x")
    assert time.perf_counter() - start < 1.0, message


@pytest.mark.parametrize("crc", ["kept", "forged for the declared bytes", "forged for one byte more"])
def test_a_header_that_understates_the_size_is_refused_while_streaming(tmp_path, crc):
    """64 MiB of zeros declared as 1,000 bytes (a 0.02x ratio passes the ratio check): refused at the first byte
    past 1,000 whatever the CRC says, without inflating the rest."""
    archive = _deflated_zip(tmp_path / "liar.zip", "models/model.pt", 64 << 20, declared=1000)
    _patch_header(archive, "models/model.pt", 22, 24, 1000)  # uncompressed size: local header, central record
    if crc != "kept":
        forged = zlib.crc32(bytes(1000 if crc == "forged for the declared bytes" else 1001))
        _patch_header(archive, "models/model.pt", 14, 16, forged)
    start = time.perf_counter()
    _refused(archive, tmp_path / "received", "inflates past its declared size|Bad CRC-32")
    assert time.perf_counter() - start < 1.0


def test_a_crc_error_is_refused(tmp_path):
    archive = _deflated_zip(tmp_path / "crc.zip", "configs/metadata.json", 5000)
    _patch_header(archive, "configs/metadata.json", 14, 16, 0xDEADBEEF)
    _refused(archive, tmp_path / "received", "corrupt entry .*Bad CRC-32")


def test_corrupt_deflate_data_is_refused(tmp_path):
    archive = _write_zip(tmp_path / "ok.zip", {"configs/metadata.json": bytes(range(256)) * 64})
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("configs/metadata.json")
    data[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # a stored entry: flip a data byte
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(bytes(data))
    _refused(corrupt, tmp_path / "received", "Bad CRC-32|sha256 does not match")
    deflated = _deflated_zip(tmp_path / "deflated.zip", "configs/metadata.json", 1 << 16)
    data = bytearray(deflated.read_bytes())
    data[40:60] = b"\xff" * 20  # the start of the deflate stream
    deflated.write_bytes(bytes(data))
    _refused(deflated, tmp_path / "received", "corrupt entry")


@pytest.mark.parametrize("kind", ["truncated", "not a zip", "empty", "a folder"])
def test_unreadable_archives_are_refused(tmp_path, kind):
    archive = tmp_path / "in.zip"
    if kind == "truncated":
        _deflated_zip(tmp_path / "whole.zip", "models/model.pt", 1 << 20)
        archive.write_bytes((tmp_path / "whole.zip").read_bytes()[:600])
    elif kind == "not a zip":
        archive.write_text("models/model.pt\n" * 100)
    elif kind == "empty":
        archive.write_bytes(b"")
    else:
        archive.mkdir()
    _refused(archive, tmp_path / "received", "not a readable zip")


def test_a_zip_truncated_after_its_central_directory_moved_is_refused(tmp_path):
    """The end record survives but the data it points at is cut short."""
    whole = _deflated_zip(tmp_path / "whole.zip", "models/model.pt", 1 << 20).read_bytes()
    with zipfile.ZipFile(tmp_path / "whole.zip") as zf:
        start = zf.getinfo("models/model.pt").header_offset + 100
    archive = tmp_path / "cut.zip"
    archive.write_bytes(whole[:start] + whole[start + 200 :])
    _refused(archive, tmp_path / "received", "not a readable zip|corrupt entry|Bad|Truncated")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("configs/" + "a" * 5000 + ".json", "name of 5013 bytes is longer than 1024"), ("d/" + "b" * 300, "component")],
)
def test_over_long_names_are_refused(tmp_path, name, reason):
    archive = _write_zip(tmp_path / "long.zip", {"configs/metadata.json": b"{}", name: b"x"})
    message = _refused(archive, tmp_path / "received", reason)
    assert "a" * 200 not in message  # the name is cut short in the message


def test_too_many_entries_are_refused(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(10_001):
            zf.writestr(f"configs/{i}.json", b"")
    _refused(archive, tmp_path / "received", "10001 entries, more than 10000")


def test_unpacked_size_and_compression_method_are_bounded(tmp_path, monkeypatch):
    archive = _write_zip(tmp_path / "big.zip", {"configs/metadata.json": b"{}" * 600})
    monkeypatch.setattr(pack, "MAX_UNPACKED_BYTES", 1000)
    _refused(archive, tmp_path / "received", "more than 1000")
    monkeypatch.undo()
    bz = tmp_path / "bz.zip"
    with zipfile.ZipFile(bz, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("configs/metadata.json", b"{}")
    _refused(bz, tmp_path / "received", "compression method 12 is not allowed")


def test_a_failure_while_extracting_removes_everything_it_created(tmp_path, monkeypatch):
    archive = _write_zip(tmp_path / "ok.zip", {"configs/metadata.json": b"{}", "models/model.pt": b"w" * 100})
    calls = []

    def failing_read(zf, info, out=None):
        calls.append(info.filename)
        if out is not None and len(calls) > 4:  # the checks pass; the second file written fails
            raise BundleError("disk trouble")
        return read_entry(zf, info, out)

    monkeypatch.setattr(pack, "read_entry", failing_read)
    dest = tmp_path / "new" / "deeper" / "received"
    with pytest.raises(BundleError, match="disk trouble"):
        unpack_bundle(archive, dest)
    assert not (tmp_path / "new").exists(), "parent folders created for the destination were left behind"
    _nothing_left(tmp_path, dest)
    monkeypatch.undo()
    assert check_manifest(unpack_bundle(archive, dest)) == []


def test_cli_unpack_prints_one_line_and_exits_1(tmp_path, capsys):
    from unet_med.cli import main

    archive = _deflated_zip(tmp_path / "bomb.zip", "models/model.pt", 8 << 20)
    assert main(["bundle", "unpack", str(archive), str(tmp_path / "received")]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "refusing to unpack" in captured.err
    assert "Traceback" not in captured.err + captured.out
    _nothing_left(tmp_path, tmp_path / "received")


def test_pack_with_a_key_signs_the_zip(bundle_copy, tmp_path, monkeypatch):
    from unet_med.bundle.signing import generate_key, verify_signature

    (tmp_path / "trusted").mkdir()
    key_id = generate_key(tmp_path / "k.pem", tmp_path / "trusted" / "k.pem")
    with pytest.raises(ValueError, match="both key and signer"):
        pack_bundle(bundle_copy, tmp_path / "x.zip", key=tmp_path / "k.pem")
    archive = pack_bundle(bundle_copy, tmp_path / "signed.zip", key=tmp_path / "k.pem", signer="Dr A")
    with zipfile.ZipFile(archive) as zf:
        assert "signature.json" in zf.namelist()
        manifest = json.loads(zf.read(MANIFEST))
    assert manifest["name"] == json.loads((bundle_copy / "configs" / "metadata.json").read_text())["name"]
    assert "models/model.pt" in manifest["files"] and "signature.json" not in manifest["files"]
    report = verify_signature(archive, tmp_path / "trusted")
    assert report.ok and report.signer == "Dr A" and report.key_id == key_id, report.problems
    received = unpack_bundle(archive, tmp_path / "received")
    assert verify_signature(received, tmp_path / "trusted").ok
