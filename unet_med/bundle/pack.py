"""Packing a bundle into one zip to send, and unpacking a received zip only after every check passes.

A packed bundle holds ``configs/``, ``docs/``, the licence, ``models/model.pt`` (the weights), the exports
``models/model.ts`` (TorchScript) and ``models/model.onnx``, and ``manifest.json`` with the sha256 of every file
and the bundle version. Training outputs (``runs/``, ``models/last.pt``, caches) stay behind.

:func:`unpack_bundle` refuses absolute paths, ``..`` paths, links and other special entries, files the manifest
does not list, and any size or checksum mismatch, all before it writes anything; it extracts into a temporary
folder beside the destination and renames it into place only when every file has been written and re-checked.

Example::

    pack_bundle("bundles/unet", "unet-0.1.0.zip")
    unpack_bundle("unet-0.1.0.zip", "received/unet")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from unet_med.bundle.manifest import MANIFEST, BundleError, build_manifest, read_manifest, sha256_file
from unet_med.bundle.scan import scan_bundle
from unet_med.utils.io import atomic_path

__all__ = ["MAX_UNPACKED_BYTES", "pack_bundle", "unpack_bundle"]

#: Refuse zips whose files would take more than this when unpacked (a zip bomb guard).
MAX_UNPACKED_BYTES = 16 << 30
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: packing the same bundle twice gives the same zip


def _files_to_pack(root: Path) -> list[Path]:
    files = [p for p in (root / "configs").rglob("*") if p.is_file()]
    if (root / "docs").is_dir():
        files += [p for p in (root / "docs").rglob("*") if p.is_file()]
    files += [p for p in root.iterdir() if p.is_file() and re.match(r"(LICEN[CS]E|COPYING|NOTICE)", p.name, re.I)]
    links = [p for p in files if p.is_symlink()]
    if links:
        raise BundleError(f"{root}: links cannot be packed", [str(p.relative_to(root)) for p in links])
    return sorted(files)


def pack_bundle(
    bundle_dir: str | os.PathLike, out: str | os.PathLike, onnx: bool = True, weights: str | None = None
) -> Path:
    """Scans the bundle, exports its network and writes the zip ``out`` with a manifest. Returns ``out``.

    Args:
        bundle_dir: the bundle folder (holding ``configs/metadata.json`` and ``models/model.pt``).
        out: the zip to write (atomically).
        onnx: also export ``models/model.onnx`` (needs the ``export`` extra).
        weights: the weights to pack, relative to ``bundle_dir`` (default ``models/model.pt``).

    Raises:
        BundleError: the safety scan found unsafe constructs, or the weights are missing or not weights-only.
        ImportError: ``onnx=True`` without the ``export`` extra installed.
    """
    from unet_med.bundle.export import export_onnx, export_torchscript, require_onnx
    from unet_med.engines import load_state_dict

    root = Path(bundle_dir).resolve()
    if not (root / "configs" / "metadata.json").is_file():
        raise BundleError(f"{root}: not a bundle (no configs/metadata.json)")
    findings = scan_bundle(root)
    if findings:
        raise BundleError(f"{root}: refusing to pack, the safety scan failed", [str(f) for f in findings])
    model = root / (weights or "models/model.pt")
    try:
        load_state_dict(model)
    except (FileNotFoundError, ValueError) as e:
        raise BundleError(f"{root}: refusing to pack", [str(e)]) from e
    if onnx:
        require_onnx()
    meta = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="unet-med-pack-") as tmp:
        stage = Path(tmp) / "bundle"
        for path in _files_to_pack(root):
            dest = stage / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        (stage / "models").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, stage / "models" / "model.pt")
        export_torchscript(stage, stage / "models" / "model.ts")
        if onnx:
            export_onnx(stage, stage / "models" / "model.onnx")
        manifest = build_manifest(stage, name=str(meta.get("name", root.name)), version=str(meta.get("version", "")))
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        with atomic_path(out) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), date_time=_ZIP_TIME)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return Path(out)


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry may not be extracted, or ``None``."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"{name!r}: links are not allowed"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: a zip made without Unix file types
        return f"{name!r}: special files are not allowed"
    if "\\" in name or "\x00" in name:
        return f"{name!r}: backslashes and NUL bytes are not allowed in names"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return f"{name!r}: absolute paths are not allowed"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return f"{name!r}: '..' paths are not allowed"
    if not parts or any(p in ("", ".") for p in name.rstrip("/").split("/")):
        return f"{name!r}: empty or '.' path components are not allowed"
    if info.flag_bits & 0x1:
        return f"{name!r}: encrypted entries are not allowed"
    return None


def _check_zip(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every check on the zip, before anything is written; returns the file entries by name."""
    problems = []
    files: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        problem = _entry_problem(info)
        if problem:
            problems.append(problem)
        elif info.is_dir():
            continue
        elif info.filename in files:
            problems.append(f"{info.filename!r}: duplicate entry")
        else:
            files[info.filename] = info
    if problems:
        raise BundleError("refusing to unpack: unsafe entries", problems)
    if sum(i.file_size for i in files.values()) > MAX_UNPACKED_BYTES:
        raise BundleError(f"refusing to unpack: more than {MAX_UNPACKED_BYTES} bytes unpacked")
    if MANIFEST not in files:
        raise BundleError(f"refusing to unpack: no {MANIFEST} (pack bundles with 'unet-med bundle pack')")
    manifest = read_manifest(zf.read(files[MANIFEST]), MANIFEST)
    listed = manifest["files"]
    entries = set(files) - {MANIFEST}
    problems += [f"{n!r}: not listed in the manifest" for n in sorted(entries - set(listed))]
    problems += [f"{n!r}: listed in the manifest but not in the zip" for n in sorted(set(listed) - entries)]
    for name in sorted(entries & set(listed)):
        info = files[name]
        if info.file_size != listed[name]["size"]:
            problems.append(f"{name!r}: size {info.file_size} does not match the manifest ({listed[name]['size']})")
            continue
        with zf.open(info) as stream:
            if sha256_file(stream) != listed[name]["sha256"]:
                problems.append(f"{name!r}: sha256 does not match the manifest (tampered or corrupt)")
    if problems:
        raise BundleError("refusing to unpack: the zip does not match its manifest", problems)
    return files


def unpack_bundle(zip_path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Checks the zip completely, then extracts it to ``dest`` (which must not exist, or be empty).

    Raises:
        BundleError: an unsafe entry, an unlisted or missing file, or a checksum mismatch; nothing is written.
        FileExistsError: ``dest`` exists and is not an empty folder.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise BundleError(f"{zip_path}: not a readable zip ({e})") from e
    with zf:
        files = _check_zip(zf)
        expected = read_manifest(zf.read(files[MANIFEST]))["files"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
        try:
            for name, info in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                if name != MANIFEST and sha256_file(target) != expected[name]["sha256"]:
                    raise BundleError(f"{name!r}: changed while unpacking")
            if dest.exists():
                dest.rmdir()
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
            raise
    return dest
