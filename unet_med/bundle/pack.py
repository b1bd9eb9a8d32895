"""Packing a bundle into one zip to send, and unpacking a received zip only after every check passes.

A packed bundle holds ``configs/``, ``docs/``, the licence, ``models/model.pt`` (the weights; no TorchScript or
ONNX model file, which a receiver would never run), and ``manifest.json`` with the sha256 of every file
and the bundle version; when packed with a key, also ``signature.json`` (see :mod:`unet_med.bundle.signing`).
Training outputs (``runs/``, ``models/last.pt``, caches) stay behind.

:func:`unpack_bundle` refuses absolute paths, ``..`` paths, links and other special entries, files the manifest
does not list, and any size or checksum mismatch, all before it writes anything; it extracts into a temporary
folder beside the destination and renames it into place only when every file has been written and re-checked.

A received zip is bounded before a byte of it is inflated, so a zip bomb costs neither disk, memory nor time:

- :data:`MAX_ENTRIES` entries (10,000; a bundle holds a few dozen files),
- :data:`MAX_NAME_BYTES` bytes per entry name (1,024) and :data:`MAX_COMPONENT_BYTES` per path component (255,
  the limit of ext4, NTFS and APFS),
- :data:`MAX_UNPACKED_BYTES` declared bytes in all (4 GiB),
- a declared compression ratio of at most :data:`MAX_RATIO` (200x) for any entry larger than
  :data:`RATIO_EXEMPT_BYTES` (1 MiB): weights and exports compress about 1.1x, JSON about 5x, while a deflate
  bomb inflates about 1,000x,
- stored or deflated entries only (what :func:`pack_bundle` writes).

Declared sizes can lie, so every entry is also counted while it streams (:func:`read_entry`) and refused at the
first byte past its declared size. Every refusal is one :class:`BundleError`, and nothing is left behind: no
temporary folder, no partial destination, no parent folder that did not exist before.

Example::

    pack_bundle("bundles/unet", "unet-0.1.0.zip")
    unpack_bundle("unet-0.1.0.zip", "received/unet")
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from unet_med.bundle.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    SIGNATURE,
    BundleError,
    build_manifest,
    read_manifest,
)
from unet_med.bundle.recognize import require_recognized
from unet_med.bundle.zip_entries import ZIP_ERRORS, read_entry, short_name
from unet_med.utils.io import atomic_path

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_ENTRIES",
    "MAX_NAME_BYTES",
    "MAX_RATIO",
    "MAX_UNPACKED_BYTES",
    "RATIO_EXEMPT_BYTES",
    "bundle_files",
    "pack_bundle",
    "unpack_bundle",
]

#: Refuse zips whose files would take more than this when unpacked. 4 GiB holds the weights and both exports of
#: a large 3D U-Net (3 x ~400 MB in float32) several times over; more than that is not a bundle.
MAX_UNPACKED_BYTES = 4 << 30
#: Refuse zips with more entries than this (a bundle holds a few dozen files; the central directory is bounded).
MAX_ENTRIES = 10_000
#: Refuse entries whose name is longer than this, in UTF-8 bytes (Linux's PATH_MAX is 4,096).
MAX_NAME_BYTES = 1024
#: Refuse entries with a path component longer than this, in UTF-8 bytes (the file-name limit of common disks).
MAX_COMPONENT_BYTES = 255
#: Refuse entries whose declared size is more than this many times their compressed size ...
MAX_RATIO = 200
#: ... unless they declare at most this many bytes (small JSON full of repeats compresses well and is harmless).
RATIO_EXEMPT_BYTES = 1 << 20
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: packing the same bundle twice gives the same zip


def bundle_files(root: Path) -> list[Path]:
    """The files of a bundle that travel: ``configs/``, ``docs/`` and ``LICENSE`` (no weights, runs or caches).

    Raises:
        BundleError: one of them is a link.
    """
    files = [p for p in (root / "configs").rglob("*") if p.is_file()]
    if (root / "docs").is_dir():
        files += [p for p in (root / "docs").rglob("*") if p.is_file()]
    files += [p for p in root.iterdir() if p.is_file() and p.name == "LICENSE"]
    links = [p for p in files if p.is_symlink()]
    if links:
        raise BundleError(f"{root}: links cannot be packed", [str(p.relative_to(root)) for p in links])
    return sorted(files)


def pack_bundle(
    bundle_dir: str | os.PathLike,
    out: str | os.PathLike,
    weights: str | None = None,
    key: str | os.PathLike | None = None,
    signer: str | None = None,
    trust_bundle_code: bool = False,
) -> Path:
    """Recognises the bundle and writes the zip ``out`` with a manifest (signed when a key is given).

    The zip holds ``configs/``, ``docs/``, the licence and ``models/model.pt`` (with a fold ensemble's other members,
    ``models/model_fold{i}.pt``): data only. No TorchScript or ONNX export goes with it: a receiving site never runs
    a sender's model file, it exports its own from the recognised configs and weights (``unet-med bundle export``).

    Args:
        bundle_dir: the bundle folder (holding ``configs/task.json`` and ``models/model.pt``).
        out: the zip to write (atomically).
        weights: the weights to pack, relative to ``bundle_dir`` (default ``models/model.pt``).
        key: an Ed25519 private key (PEM, from :func:`unet_med.bundle.signing.generate_key`); when given, the
            manifest is signed and ``signature.json`` is packed beside it.
        signer: who signs (``"Name, Hospital"``); required with ``key``.
        trust_bundle_code: pack a bundle that is not recognised (its receivers will have to trust it too).

    Raises:
        BundleError: the bundle is not recognised, or the weights are missing or not weights-only.
        ValueError: ``key`` without ``signer``, or the reverse.
    """
    from unet_med.engines import load_state_dict

    if (key is None) != (signer is None):
        raise ValueError("pack_bundle: give both key and signer to sign, or neither")
    root = Path(bundle_dir).resolve()
    if not (root / "configs" / "metadata.json").is_file():
        raise BundleError(f"{root}: not a bundle (no configs/metadata.json)")
    recognised = require_recognized(root, trust_bundle_code=trust_bundle_code, weights=weights is None)
    model = root / (weights or "models/model.pt")
    # the other members of a fold ensemble (models/model_fold{i}.pt), as recognition found and checked them
    members = dict(recognised.member_weights) if recognised.ok else {}
    try:
        load_state_dict(model)
    except (FileNotFoundError, ValueError) as e:
        raise BundleError(f"{root}: refusing to pack", [str(e)]) from e
    meta = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="unet-med-pack-") as tmp:
        stage = Path(tmp) / "bundle"
        for path in bundle_files(root):
            dest = stage / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        (stage / "models").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, stage / "models" / "model.pt")
        for name, data in sorted(members.items()):
            (stage / "models" / name).write_bytes(data)  # the bytes recognition checked
        manifest = build_manifest(stage, name=str(meta.get("name", root.name)), version=str(meta.get("version", "")))
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if key is not None and signer is not None:
            from unet_med.bundle.signing import sign_bundle

            sign_bundle(stage, key, signer)  # keeps the manifest's name and version, adds the signer
        with atomic_path(out) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), date_time=_ZIP_TIME)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return Path(out)


def _limit_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is beyond the module's bounds (name length, compression method and ratio), or ``None``."""
    name = short_name(info.filename)
    encoded = info.filename.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_NAME_BYTES:
        return f"{name}: name of {len(encoded)} bytes is longer than {MAX_NAME_BYTES}"
    longest = max((len(p.encode("utf-8", "surrogateescape")) for p in info.filename.split("/")), default=0)
    if longest > MAX_COMPONENT_BYTES:
        return f"{name}: a path component of {longest} bytes is longer than {MAX_COMPONENT_BYTES}"
    if info.is_dir():
        return None
    if info.compress_type not in _METHODS:
        return f"{name}: compression method {info.compress_type} is not allowed (stored or deflated only)"
    if info.file_size > RATIO_EXEMPT_BYTES and info.file_size > MAX_RATIO * info.compress_size:
        ratio = info.file_size / max(info.compress_size, 1)
        return f"{name}: declares {info.file_size} bytes from {info.compress_size} ({ratio:.0f}x > {MAX_RATIO}x)"
    return None


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
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise BundleError(f"refusing to unpack: {len(infos)} entries, more than {MAX_ENTRIES}")
    for info in infos:  # the bounds first, one line each, before any name is printed in full
        problem = _limit_problem(info)
        if problem:
            raise BundleError(f"refusing to unpack: {problem}")
    problems = []
    files: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
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
    total = sum(i.file_size for i in files.values())
    if total > MAX_UNPACKED_BYTES:
        raise BundleError(f"refusing to unpack: {total} bytes unpacked, more than {MAX_UNPACKED_BYTES}")
    if MANIFEST not in files:
        raise BundleError(f"refusing to unpack: no {MANIFEST} (pack bundles with 'unet-med bundle pack')")
    if files[MANIFEST].file_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"refusing to unpack: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    manifest = read_manifest(_read_small(zf, files[MANIFEST]), MANIFEST)
    listed = manifest["files"]
    entries = set(files) - {MANIFEST, SIGNATURE}  # the signature signs the manifest, which cannot list it
    problems += [f"{n!r}: not listed in the manifest" for n in sorted(entries - set(listed))]
    problems += [f"{n!r}: listed in the manifest but not in the zip" for n in sorted(set(listed) - entries)]
    for name in sorted(entries & set(listed)):
        info = files[name]
        if info.file_size != listed[name]["size"]:
            problems.append(f"{name!r}: size {info.file_size} does not match the manifest ({listed[name]['size']})")
        elif _read(zf, info) != listed[name]["sha256"]:
            problems.append(f"{name!r}: sha256 does not match the manifest (tampered or corrupt)")
    if problems:
        raise BundleError("refusing to unpack: the zip does not match its manifest", problems)
    return files


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes] | None = None) -> str:
    """:func:`read_entry`, its refusal worded as the others here."""
    try:
        return read_entry(zf, info, out)
    except BundleError as e:
        raise BundleError(f"refusing to unpack: {e}") from e


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """An entry already known to be small (the manifest), read whole."""
    buffer = io.BytesIO()
    _read(zf, info, buffer)
    return buffer.getvalue()


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, outermost first."""
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.insert(0, folder)
        folder = folder.parent
    return missing


def unpack_bundle(zip_path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Checks the zip completely, then extracts it to ``dest`` (which must not exist, or be empty).

    The bounds in the module docstring are checked first, from the central directory alone; then every entry is
    hashed (counted against its declared size) and compared with the manifest; only then is anything written.

    Args:
        zip_path: the received zip.
        dest: the folder to create.

    Raises:
        BundleError: not a readable zip, a truncated or corrupt one (bad CRC, broken deflate data), an entry over
            a bound or inflating past its declared size, an unsafe entry, an unlisted or missing file, or a
            checksum mismatch. Nothing is left behind: no temporary folder, no partial ``dest``.
        FileExistsError: ``dest`` exists and is not an empty folder.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, *ZIP_ERRORS) as e:
        raise BundleError(f"refusing to unpack: {zip_path} is not a readable zip ({e})") from e
    with zf:
        files = _check_zip(zf)
        expected = read_manifest(_read_small(zf, files[MANIFEST]))["files"]
        created = _missing_folders(dest.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
        try:
            for name, info in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as dst:
                    digest = _read(zf, info, dst)
                if name in expected and digest != expected[name]["sha256"]:
                    raise BundleError(f"refusing to unpack: {name!r} changed while unpacking")
            if dest.exists():
                dest.rmdir()
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    return dest
