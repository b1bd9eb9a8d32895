"""Integrity on every run: a bundle that carries a manifest must still be what it lists, and signed when the site
pins keys.

A packed bundle (:func:`unet_med.bundle.pack.pack_bundle`) carries ``manifest.json`` with the sha256 and size of
every file, and ``signature.json`` when its sender signed it. ``unet-med bundle verify`` checks both once, on the
zip; :func:`check_integrity` checks them again each time the bundle is loaded to run (``unet-med predict``,
``unet-med bundle run``, packing, federated jobs), so a file changed after unpacking (a replaced
``models/model.pt`` of the right shape, an edited ``configs/task.json``) is refused:

- with ``manifest.json``: every listed file present with its size and sha256, and no file the manifest does not
  list (training outputs such as ``runs/`` and ``models/last.pt`` aside). The configs and weights are hashed from
  the bytes recognition read, so what was checked is what runs.
- with pinned keys as well (the site setting :data:`TRUSTED_KEYS_ENV`, a folder of senders' public keys
  ``*.pem``): ``signature.json`` must sign the exact bytes of that manifest with one of those keys. An unsigned
  packed bundle is then refused.
- without ``manifest.json`` (a bundle made at this site, e.g. in ``bundles/``): nothing to compare with; only
  recognition applies.

Hashing is cheap next to recognition, which runs anyway: a median of 14-27 ms for the 20.8 MB em_membranes bundle,
signature included, against 290 ms for recognition itself on a 2-core CPU (``benchmarks/bench_integrity.py``;
docs/sharing-bundles.md).

Example::

    integrity = check_integrity("received/unet", checked={"configs/task.json": data})
    integrity.problems  # [] when every file is what manifest.json lists
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unet_med.bundle.manifest import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, BundleError, read_manifest, sha256_file

__all__ = ["TRUSTED_KEYS_ENV", "Integrity", "check_integrity", "site_trusted_keys"]

#: The site setting that pins senders' keys: a folder of Ed25519 public keys (``*.pem``). When set, every bundle
#: carrying a manifest must be signed by one of them before it runs.
TRUSTED_KEYS_ENV = "UNET_MED_TRUSTED_KEYS"


@dataclass
class Integrity:
    """What :func:`check_integrity` found.

    Attributes:
        manifest: the bundle carries ``manifest.json`` (a packed, received bundle).
        signer: who signed the manifest, when the site pins keys and the signature verifies.
        changed: listed files whose bytes differ from the manifest (POSIX paths relative to the bundle).
        problems: every reason to refuse the bundle; empty when it may run.
    """

    manifest: bool = False
    signer: str | None = None
    changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def site_trusted_keys() -> Path | None:
    """The folder of pinned keys this site set in :data:`TRUSTED_KEYS_ENV`, or ``None`` when it pins none."""
    value = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _read_small(path: Path, limit: int) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{path.name}: not a regular file")
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{path.name}: larger than {limit} bytes")
    return data


def _ignored(rel: str, ignore: Sequence[str]) -> bool:
    return any(rel == o or rel.startswith(f"{o}/") for o in ignore)


def _signature_problems(root: Path, manifest_bytes: bytes, keys: Path, integrity: Integrity) -> list[str]:
    from unet_med.bundle.signing import MAX_SIGNATURE_BYTES, verify_manifest_signature

    if not (root / SIGNATURE).exists():
        return [f"unsigned: this site pins senders' keys ({TRUSTED_KEYS_ENV}={keys}) and the bundle has no {SIGNATURE}"]
    report = verify_manifest_signature(manifest_bytes, _read_small(root / SIGNATURE, MAX_SIGNATURE_BYTES), keys)
    integrity.signer = report.signer if report.ok else None
    return [f"{SIGNATURE}: {p}" for p in report.problems]


def check_integrity(
    bundle_dir: str | os.PathLike,
    checked: Mapping[str, bytes] | None = None,
    ignore: Sequence[str] = (),
    trusted_keys: str | os.PathLike | None = None,
) -> Integrity:
    """Compares a bundle folder with its ``manifest.json`` and, with ``trusted_keys``, checks its signature.

    Args:
        bundle_dir: the bundle folder.
        checked: bytes already read (``"configs/inference.json"`` -> bytes); they are hashed instead of the file,
            so the bytes compared are the bytes used.
        ignore: paths (and folders) written locally by training or inference, never compared.
        trusted_keys: the folder of pinned public keys; ``None`` checks no signature.

    Returns:
        What was found; never raises for a bad bundle.
    """
    root = Path(bundle_dir)
    integrity = Integrity()
    path = root / MANIFEST
    if not path.exists() and not path.is_symlink():
        if (root / SIGNATURE).exists():
            integrity.problems.append(f"{SIGNATURE} without {MANIFEST}: the manifest it signs was removed")
        return integrity
    integrity.manifest = True
    try:
        data = _read_small(path, MAX_MANIFEST_BYTES)
        listed = read_manifest(data)["files"]
        if trusted_keys is not None:
            integrity.problems += _signature_problems(root, data, Path(trusted_keys), integrity)
    except (BundleError, OSError) as e:
        integrity.problems.append(str(e).splitlines()[0])
        return integrity
    checked = checked or {}
    for rel, entry in listed.items():
        file = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            integrity.problems.append(f"{rel}: a path outside the bundle in {MANIFEST}")
        elif rel in checked:
            if len(checked[rel]) != entry["size"] or hashlib.sha256(checked[rel]).hexdigest() != entry["sha256"]:
                integrity.changed.append(rel)
        elif file.is_symlink() or not file.is_file():
            integrity.problems.append(f"{rel}: listed in {MANIFEST} but missing (removed after packing)")
        elif file.stat().st_size != entry["size"] or sha256_file(file) != entry["sha256"]:
            integrity.changed.append(rel)
    integrity.problems += [
        f"{rel}: changed after packing (its sha256 differs from {MANIFEST})" for rel in integrity.changed
    ]
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        if file.is_dir() or rel in (MANIFEST, SIGNATURE) or rel in listed or _ignored(rel, ignore):
            continue
        integrity.problems.append(f"{rel}: not in {MANIFEST} (added after packing)")
    return integrity
