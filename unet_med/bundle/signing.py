"""Signatures: who sent a bundle, checked against the public keys a receiving site has pinned.

The sender signs the exact bytes of the bundle's ``manifest.json`` with an Ed25519 private key. The manifest lists
the sha256 and size of every other file of the bundle and names the signer and key id (``signed_by``), so one
64-byte signature covers all of it. The signature goes into ``signature.json`` beside the manifest::

    {"signature_version": 1, "algorithm": "ed25519", "key_id": "3f2a...", "signer": "A. Smith, St Mary's",
     "manifest_sha256": "...", "signature": "<base64>"}

A key id is the first 16 hex digits of the sha256 of the raw 32-byte public key.

A receiving site pins the senders it trusts by copying their public keys (``*.pem``) into one folder.
:func:`verify_signature` then requires a signature by one of those keys over the manifest bytes, and a folder
(or packed zip) that holds exactly the files the manifest lists, each of the listed size and sha256: nothing
added, removed or changed. It only reads files, hashes them and parses JSON of bounded size; nothing in the
bundle is imported, evaluated or unpickled. :func:`require_signature` is the gate to call before running a
bundle: it raises :class:`BundleError` with a one-line reason when the bundle is refused.

Example::

    generate_key("keys/stmary.pem", "keys/stmary.pub.pem")  # once, at the sending site
    sign_bundle("bundles/unet", "keys/stmary.pem", signer="A. Smith, St Mary's")
    # the receiving site copies stmary.pub.pem into trusted-keys/, then:
    report = require_signature("received/unet", "trusted-keys")
    print(report.format())  # signed by 'A. Smith, St Mary's' (key 3f2a...): every file matches ...
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from unet_med.bundle.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    SIGNATURE,
    BundleError,
    build_manifest,
    read_manifest,
    sha256_file,
)
from unet_med.bundle.zip_entries import ZIP_ERRORS, read_entry, short_name
from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_SIGNATURE_BYTES",
    "SignatureReport",
    "generate_key",
    "key_id",
    "require_signature",
    "sign_bundle",
    "verify_manifest_signature",
    "verify_signature",
]

logger = logging.getLogger(__name__)

#: ``signature.json`` larger than this is refused unread (a real one is about 300 bytes).
MAX_SIGNATURE_BYTES = 64 << 10
#: Key files larger than this are refused unread (an Ed25519 PEM key is about 120 bytes).
MAX_KEY_BYTES = 64 << 10
_SIGNATURE_VERSION = 1
_ALGORITHM = "ed25519"
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class SignatureReport:
    """The result of :func:`verify_signature`.

    Attributes:
        ok: the signature verifies with a trusted key and every file matches the signed manifest.
        signer: who signed, as written in the signed manifest (as claimed by ``signature.json`` when refused).
        key_id: the id of the signing key.
        problems: why the bundle is refused; empty when ``ok``.
        signed: ``False`` when the bundle has no ``signature.json`` at all (the problem is then ``"unsigned"``).
    """

    ok: bool
    signer: str | None = None
    key_id: str | None = None
    problems: list[str] = field(default_factory=list)
    signed: bool = True

    def accepted(self, allow_unsigned: bool = False) -> bool:
        """Whether the bundle may run: signed and unchanged, or (with ``allow_unsigned``) not signed at all. A
        signature that is present but fails is never accepted."""
        return self.ok or (allow_unsigned and not self.signed)

    def format(self) -> str:
        """One line: who signed it, or why it is refused."""
        if self.ok:
            return f"signed by {self.signer!r} (key {self.key_id}): every file matches the signed manifest"
        claimed = f" (signature.json names {self.signer!r}, key {self.key_id})" if self.key_id else ""
        reasons = "; ".join(self.problems[:3]) + (
            f"; and {len(self.problems) - 3} more" if len(self.problems) > 3 else ""
        )
        return f"refused{claimed}: {reasons}"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the sha256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_out: str | os.PathLike, public_out: str | os.PathLike) -> str:
    """Makes an Ed25519 key pair and returns its key id.

    Args:
        private_out: the private key to write (PEM, PKCS#8, unencrypted, mode 0600, atomically). Keep it at the
            sending site only.
        public_out: the public key to write (PEM, SubjectPublicKeyInfo), the file receiving sites pin.

    Raises:
        FileExistsError: ``private_out`` exists (a signing key is never overwritten).
    """
    if Path(private_out).exists():
        raise FileExistsError(f"{private_out} exists; refusing to overwrite a private key")
    private = Ed25519PrivateKey.generate()
    with atomic_path(private_out) as tmp:
        os.chmod(tmp, 0o600)  # before the key is written, so it is never readable by others
        tmp.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public = private.public_key()
    with atomic_path(public_out) as tmp:
        tmp.write_bytes(
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return key_id(public)


def _read_limited(path: Path, limit: int, label: str | None = None, follow_links: bool = False) -> bytes:
    """A regular file of at most ``limit`` bytes; larger files, and links unless ``follow_links`` (the site's own
    key files may be links), are refused unread. ``label`` names the file in the refusal (default its path)."""
    label = label or str(path)
    st = os.stat(path) if follow_links else os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{label}: not a regular file")
    if st.st_size > limit:
        raise BundleError(f"{label}: {st.st_size} bytes, more than {limit}")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since the check above
        raise BundleError(f"{label}: more than {limit} bytes")
    return data


def _load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_limited(Path(path), MAX_KEY_BYTES, follow_links=True), None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise BundleError(f"{path}: not an unencrypted Ed25519 private key in PEM ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: a {type(key).__name__}, not an Ed25519 private key")
    if os.stat(path).st_mode & 0o077:
        logger.warning("%s: the private key is readable by other users; chmod 600 it", path)
    return key


def _walk(root: Path) -> tuple[dict[str, int], list[str]]:
    """Every regular file under ``root`` (POSIX path -> size), and the links and special files found."""
    files: dict[str, int] = {}
    problems: list[str] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in [*dirs, *names]:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{short_name(rel)}: links are not allowed")
            elif stat.S_ISREG(st.st_mode):
                files[rel] = st.st_size
            elif not stat.S_ISDIR(st.st_mode):
                problems.append(f"{short_name(rel)}: special files are not allowed")
    return files, problems


def _name_and_version(root: Path) -> tuple[str, str]:
    """The bundle's name and version: from ``configs/metadata.json``, else an existing manifest, else the folder."""
    for path in (root / "configs" / "metadata.json", root / MANIFEST):
        try:
            doc = json.loads(_read_limited(path, MAX_MANIFEST_BYTES))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(doc, dict) and doc.get("name") and doc.get("version"):
            return str(doc["name"]), str(doc["version"])
    return root.name, ""


def sign_bundle(bundle_dir: str | os.PathLike, private_key_path: str | os.PathLike, signer: str) -> Path:
    """Rebuilds the bundle's ``manifest.json`` over every file, signs its bytes and writes ``signature.json``.

    Every regular file of the folder is listed (not only configs, models and docs), except the manifest and the
    signature themselves. Both are written atomically. Returns the path of ``signature.json``.

    Args:
        bundle_dir: the bundle folder.
        private_key_path: the sender's Ed25519 private key (PEM, from :func:`generate_key`).
        signer: who signs, as the receiver will read it (``"A. Smith, St Mary's"``); one line.

    Raises:
        BundleError: the folder holds links or special files, or the key is not an Ed25519 private key.
        ValueError: ``signer`` is empty or spans lines.
    """
    root = Path(bundle_dir)
    signer = signer.strip()
    if not signer or any(c in signer for c in "\r\n"):
        raise ValueError(f"signer must be one non-empty line, got {signer!r}")
    if not root.is_dir():
        raise BundleError(f"{root}: not a folder")
    private = _load_private_key(private_key_path)
    _, problems = _walk(root)
    if problems:
        raise BundleError(f"{root}: refusing to sign", problems)
    kid = key_id(private.public_key())
    manifest = build_manifest(root, *_name_and_version(root))
    manifest["signed_by"] = {"signer": signer, "key_id": kid}
    data = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    document = {
        "signature_version": _SIGNATURE_VERSION,
        "algorithm": _ALGORITHM,
        "key_id": kid,
        "signer": signer,
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(private.sign(data)).decode("ascii"),
    }
    with atomic_path(root / MANIFEST) as tmp:
        tmp.write_bytes(data)
    return atomic_write_json(root / SIGNATURE, document)


@dataclass
class _TrustedKey:
    key_id: str
    key: Ed25519PublicKey
    file: Path


def _trusted_keys(folder: str | os.PathLike) -> list[_TrustedKey]:
    """Every Ed25519 public key (``*.pem``) in ``folder``; other files and keys of other types are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"trusted keys folder {folder} does not exist")
    keys = []
    for path in sorted(folder.glob("*.pem")):
        try:
            key = serialization.load_pem_public_key(_read_limited(path, MAX_KEY_BYTES, follow_links=True))
        except (OSError, BundleError, ValueError, UnsupportedAlgorithm) as e:
            logger.warning("%s: skipped, not a PEM public key (%s)", path, e)
            continue
        if not isinstance(key, Ed25519PublicKey):
            logger.warning("%s: skipped, a %s, not an Ed25519 public key", path, type(key).__name__)
            continue
        keys.append(_TrustedKey(key_id(key), key, path))
    if not keys:
        raise BundleError(f"no Ed25519 public keys (*.pem) in the trusted keys folder {folder}")
    return keys


def _parse_signature(data: bytes) -> dict[str, Any]:
    """``signature.json`` parsed and checked field by field."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise BundleError(f"{SIGNATURE} is not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise BundleError(f"{SIGNATURE} must be a JSON object")
    if doc.get("signature_version") != _SIGNATURE_VERSION or doc.get("algorithm") != _ALGORITHM:
        raise BundleError(f"{SIGNATURE}: expected signature_version 1 and algorithm 'ed25519'")
    signer, kid, digest = doc.get("signer"), doc.get("key_id"), doc.get("manifest_sha256")
    if not isinstance(signer, str) or not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
        raise BundleError(f"{SIGNATURE}: 'signer' must be a string and 'key_id' 16 hex digits")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise BundleError(f"{SIGNATURE}: 'manifest_sha256' must be 64 hex digits")
    try:
        doc["signature"] = base64.b64decode(str(doc.get("signature")), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleError(f"{SIGNATURE}: 'signature' is not base64 ({e})") from e
    if len(doc["signature"]) != 64:
        raise BundleError(f"{SIGNATURE}: an Ed25519 signature has 64 bytes, got {len(doc['signature'])}")
    return doc


def _unsafe_path(rel: str) -> bool:
    """Whether a manifest path could point outside the bundle or is not a plain relative POSIX path."""
    parts = rel.split("/")
    return (
        not rel
        or rel.startswith("/")
        or re.match(r"^[A-Za-z]:", rel) is not None
        or "\\" in rel
        or "\x00" in rel
        or any(p in ("", ".", "..") for p in parts)
    )


class _Folder:
    """A bundle folder, read as data."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, name: str, limit: int) -> bytes | None:
        return _read_limited(self.root / name, limit, name) if os.path.lexists(self.root / name) else None

    def files(self) -> tuple[dict[str, int], list[str]]:
        return _walk(self.root)

    def sha256(self, name: str) -> str:
        return sha256_file(self.root / name)


class _Zip:
    """A packed bundle, read as data without unpacking it (every entry counted against its declared size)."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.entries: dict[str, zipfile.ZipInfo] = {}
        self.problems: list[str] = []
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode) or stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                self.problems.append(f"{short_name(info.filename)}: links and special files are not allowed")
            elif info.filename in self.entries:
                self.problems.append(f"{short_name(info.filename)}: duplicate entry")
            elif not info.is_dir():
                self.entries[info.filename] = info

    def read(self, name: str, limit: int) -> bytes | None:
        info = self.entries.get(name)
        if info is None:
            return None
        if info.file_size > limit:
            raise BundleError(f"{name}: {info.file_size} bytes, more than {limit}")
        buffer = io.BytesIO()
        read_entry(self.zf, info, buffer)
        return buffer.getvalue()

    def files(self) -> tuple[dict[str, int], list[str]]:
        return {n: i.file_size for n, i in self.entries.items()}, list(self.problems)

    def sha256(self, name: str) -> str:
        return read_entry(self.zf, self.entries[name])


def _check(source: _Folder | _Zip, trusted_keys_dir: str | os.PathLike, report: SignatureReport) -> None:
    """Fills ``report`` (its ``problems`` stay empty when the bundle passes)."""
    sig_bytes = source.read(SIGNATURE, MAX_SIGNATURE_BYTES)
    if sig_bytes is None:
        report.signed = False
        report.problems.append(f"unsigned: no {SIGNATURE} (the sender signs with 'unet-med bundle sign')")
        return
    sig = _parse_signature(sig_bytes)
    report.signer, report.key_id = sig["signer"], sig["key_id"]
    manifest_bytes = source.read(MANIFEST, MAX_MANIFEST_BYTES)
    manifest = _check_signature(sig, manifest_bytes, trusted_keys_dir, report)
    if manifest is not None:
        report.problems += _compare_files(source, manifest["files"])


def _check_signature(
    sig: dict[str, Any], manifest_bytes: bytes | None, trusted_keys_dir: str | os.PathLike, report: SignatureReport
) -> dict[str, Any] | None:
    """Checks a parsed signature over the manifest bytes (not the files); the parsed manifest when it verifies."""
    if manifest_bytes is None:
        report.problems.append(f"{SIGNATURE} present but no {MANIFEST}")
        return None
    keys = _trusted_keys(trusted_keys_dir)
    matching = [k for k in keys if k.key_id == sig["key_id"]]
    if not matching:
        trusted = ", ".join(sorted({k.key_id for k in keys}))
        report.problems.append(
            f"signed with key {sig['key_id']}, which is not a trusted key in {trusted_keys_dir} (trusted: {trusted})"
        )
        return None
    if not any(_verifies(k.key, sig["signature"], manifest_bytes) for k in matching):
        names = ", ".join(k.file.name for k in matching)
        report.problems.append(
            f"the signature does not verify with trusted key {sig['key_id']} ({names}): "
            f"{MANIFEST} or {SIGNATURE} was changed after signing"
        )
        return None
    manifest = read_manifest(manifest_bytes)
    if hashlib.sha256(manifest_bytes).hexdigest() != sig["manifest_sha256"]:
        report.problems.append(f"{SIGNATURE}: manifest_sha256 does not match {MANIFEST}")
    signed_by = manifest.get("signed_by")
    if signed_by != {"signer": sig["signer"], "key_id": sig["key_id"]}:
        report.problems.append(f"{SIGNATURE}: signer and key id differ from the signed manifest's {signed_by!r}")
    elif isinstance(signed_by, dict):
        report.signer = signed_by["signer"]
    return manifest


def verify_manifest_signature(
    manifest_bytes: bytes, signature_bytes: bytes, trusted_keys_dir: str | os.PathLike
) -> SignatureReport:
    """Checks only that ``signature_bytes`` (a ``signature.json``) signs exactly ``manifest_bytes`` with a pinned
    key; comparing the files with the manifest is the caller's (see :mod:`unet_med.bundle.integrity`).

    Returns:
        The report; ``ok`` is ``False`` with the reasons in ``problems`` when refused. It never raises for a bad
        signature or an unusable keys folder.
    """
    report = SignatureReport(ok=False)
    try:
        sig = _parse_signature(signature_bytes)
        report.signer, report.key_id = sig["signer"], sig["key_id"]
        _check_signature(sig, manifest_bytes, trusted_keys_dir, report)
    except (BundleError, OSError) as e:
        report.problems.append(str(e).splitlines()[0])
    report.ok = not report.problems
    return report


def _verifies(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _compare_files(source: _Folder | _Zip, listed: dict[str, Any]) -> list[str]:
    """Every file present, listed and unchanged: nothing added, removed or changed since signing."""
    problems = [f"{short_name(rel)}: path outside the bundle in the manifest" for rel in listed if _unsafe_path(rel)]
    found, walk_problems = source.files()
    problems += walk_problems
    present = {rel: size for rel, size in found.items() if rel not in (MANIFEST, SIGNATURE)}
    problems += [
        f"{short_name(r)}: not in the signed manifest (added after signing)" for r in sorted(set(present) - set(listed))
    ]
    problems += [
        f"{short_name(r)}: in the signed manifest but missing (removed after signing)"
        for r in sorted(set(listed) - set(present))
        if not _unsafe_path(r)
    ]
    for rel in sorted(set(present) & set(listed)):
        if present[rel] != listed[rel]["size"]:
            problems.append(f"{short_name(rel)}: {present[rel]} bytes, signed as {listed[rel]['size']} (changed)")
        elif source.sha256(rel) != listed[rel]["sha256"]:
            problems.append(f"{short_name(rel)}: sha256 differs from the signed manifest (changed after signing)")
    return problems


def verify_signature(bundle_dir: str | os.PathLike, trusted_keys_dir: str | os.PathLike) -> SignatureReport:
    """Checks who signed a bundle folder (or packed zip) and that nothing changed since.

    Passes when ``signature.json`` holds an Ed25519 signature over the exact bytes of ``manifest.json`` by a key
    in ``trusted_keys_dir`` (every ``*.pem`` public key there) whose key id it names, and the bundle holds exactly
    the files the manifest lists with their sizes and sha256. Only hashing and size-limited JSON parsing happen.

    Args:
        bundle_dir: a bundle folder, or a zip written by :func:`unet_med.bundle.pack.pack_bundle` (read in place).
        trusted_keys_dir: the folder of pinned public keys.

    Returns:
        The report; ``report.ok`` is ``False`` with the reasons in ``report.problems`` when refused (``"unsigned:
        ..."`` when there is no signature at all). It never raises for a bad bundle.
    """
    path = Path(bundle_dir)
    report = SignatureReport(ok=False)
    try:
        if path.is_dir():
            _check(_Folder(path), trusted_keys_dir, report)
        elif path.is_file():
            try:
                zf = zipfile.ZipFile(path)
            except ZIP_ERRORS as e:
                raise BundleError(f"{path} is neither a folder nor a readable zip ({e})") from e
            with zf:
                _check(_Zip(zf), trusted_keys_dir, report)
        else:
            report.problems.append(f"{path} does not exist")
    except (BundleError, OSError) as e:
        report.problems.append(str(e).splitlines()[0])
    report.ok = not report.problems
    return report


def require_signature(
    bundle_dir: str | os.PathLike, trusted_keys_dir: str | os.PathLike, allow_unsigned: bool = False
) -> SignatureReport:
    """The gate before a received bundle runs: :func:`verify_signature`, raising when the bundle is refused.

    Args:
        bundle_dir: a bundle folder or packed zip.
        trusted_keys_dir: the folder of pinned public keys (``*.pem``).
        allow_unsigned: accept a bundle that has no signature at all (logged as a warning). A signature that is
            present but fails (an untrusted key, a changed file) is refused all the same.

    Returns:
        The report (``ok`` is ``False`` only for an unsigned bundle accepted with ``allow_unsigned``).

    Raises:
        BundleError: refused; the message is one line, ``problems`` holds every reason.
    """
    report = verify_signature(bundle_dir, trusted_keys_dir)
    if report.accepted(allow_unsigned):
        if not report.ok:
            logger.warning("%s: unsigned, accepted because unsigned bundles are allowed", bundle_dir)
        return report
    more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
    error = BundleError(f"{bundle_dir}: refused, {report.problems[0]}{more}")
    error.problems = list(report.problems)
    raise error
