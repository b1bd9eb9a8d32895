"""The manifest of a packed bundle: the sha256 and size of every file, and the bundle's name and version.

``manifest.json`` sits at the bundle root (beside ``configs/``) and lists every other file of the bundle by its
POSIX path relative to the root. It is where the sha256 of the weights (``models/model.pt``) and of the exports
is recorded; :func:`check_manifest` compares an unpacked folder against it.

Example::

    manifest = build_manifest("staging/unet", name="unet", version="0.1.0")
    problems = check_manifest("received/unet")  # [] when every listed file is present and unchanged
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from unet_med import __version__

__all__ = [
    "MANIFEST",
    "MAX_MANIFEST_BYTES",
    "SIGNATURE",
    "BundleError",
    "build_manifest",
    "check_manifest",
    "read_manifest",
    "sha256_file",
]

#: File name of the manifest at the bundle root.
MANIFEST = "manifest.json"
#: File name of the sender's signature of the manifest, beside it (see :mod:`unet_med.bundle.signing`). It signs
#: the manifest, so the manifest never lists it.
SIGNATURE = "signature.json"
#: A manifest larger than this is refused unread: 4 MiB lists about 20,000 files, far more than any bundle holds.
MAX_MANIFEST_BYTES = 4 << 20
#: Folders whose files must all be listed in a manifest when one is present.
COVERED_FOLDERS = ("configs", "models", "docs")


class BundleError(ValueError):
    """A bundle that cannot be trusted or used; ``problems`` lists every reason found."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems)
        details = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(f"{message}{details}")


def sha256_file(file: str | os.PathLike | IO[bytes], chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file path or an open binary stream."""
    digest = hashlib.sha256()
    stream: IO[bytes] = open(file, "rb") if isinstance(file, (str, os.PathLike)) else file
    try:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    finally:
        if isinstance(file, (str, os.PathLike)):
            stream.close()
    return digest.hexdigest()


def build_manifest(root: str | os.PathLike, name: str, version: str) -> dict[str, Any]:
    """The manifest of every file under ``root`` (the manifest and its signature excluded), sorted by path."""
    root = Path(root)
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel not in (MANIFEST, SIGNATURE):
            files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return {
        "manifest_version": 1,
        "name": name,
        "version": version,
        "created_by": f"unet-med {__version__}",
        "files": files,
    }


def read_manifest(text: str | bytes, source: str = MANIFEST) -> dict[str, Any]:
    """Parses and checks the shape of a manifest. Raises :class:`BundleError` when it is malformed or larger than
    :data:`MAX_MANIFEST_BYTES`."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{source} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser's stack
        raise BundleError(f"{source} is not valid JSON ({e})") from e
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in files.values()
    ):
        raise BundleError(f"{source} must hold a 'files' mapping of path -> {{'sha256', 'size'}}")
    return manifest


def check_manifest(root: str | os.PathLike) -> list[str] | None:
    """Compares the folder against its ``manifest.json``: ``None`` when there is no manifest, else the problems
    found (a listed file missing or changed, a file in configs/, models/ or docs/ that is not listed)."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        return None
    try:
        if (root / MANIFEST).stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        manifest = read_manifest((root / MANIFEST).read_bytes())
    except BundleError as e:
        return [str(e)]
    problems = []
    for rel, entry in manifest["files"].items():
        path = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{rel}: path outside the bundle")
        elif not path.is_file():
            problems.append(f"{rel}: listed in the manifest but missing")
        elif path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            problems.append(f"{rel}: sha256 does not match the manifest (changed after packing)")
    for folder in COVERED_FOLDERS:
        for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
            rel = path.relative_to(root).as_posix()
            if (path.is_file() or path.is_symlink()) and rel not in manifest["files"]:
                problems.append(f"{rel}: not listed in the manifest")
    return problems
