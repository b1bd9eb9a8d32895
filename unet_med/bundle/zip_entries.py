"""Reading a zip entry from an untrusted archive with its size held to what its headers declare.

:mod:`zipfile` stops an entry at its declared ``file_size`` and then checks the CRC, so an entry whose header
understates its size, with a CRC forged to match the shortened data, is returned silently cut short. Here every
entry is opened with a limit one byte above its declared size and counted while it streams: an entry that
inflates past its declared size is refused at the first extra byte (or by zipfile's CRC check at that point),
one that ends short of it is refused at its end, and no more than ``file_size + 1`` bytes are ever produced.
Every error :mod:`zipfile` or :mod:`zlib` raises on a corrupt entry becomes a one-line :class:`BundleError`.

Example::

    with zipfile.ZipFile("unet-0.1.0.zip") as zf, open("model.pt", "wb") as out:
        digest = read_entry(zf, zf.getinfo("models/model.pt"), out)
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

from unet_med.bundle.manifest import BundleError

__all__ = ["ZIP_ERRORS", "read_entry", "short_name"]

#: What :mod:`zipfile` raises on a corrupt or unsupported archive or entry (bad CRC, truncated data, a broken
#: deflate stream, an unknown compression method, an encrypted entry, a name that is not valid UTF-8).
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
)
_CHUNK = 1 << 20


def short_name(name: str, limit: int = 80) -> str:
    """``name`` quoted, cut to ``limit`` characters so a refusal stays one readable line."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


def read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes] | None = None) -> str:
    """Streams one entry into ``out`` (or nowhere) and returns its sha256; the entry must inflate to exactly its
    declared ``info.file_size`` bytes.

    Args:
        zf: the open archive.
        info: the entry, as listed in the archive's central directory.
        out: a binary stream to copy the entry into; ``None`` only hashes it.

    Raises:
        BundleError: the entry inflates to more or fewer bytes than declared, or is corrupt (bad CRC, truncated,
            a broken deflate stream); at most ``info.file_size + 1`` bytes have been read.
    """
    declared = info.file_size
    capped = copy.copy(info)
    capped.file_size = declared + 1  # zipfile stops here, so one byte past the declared size is seen, no more
    digest = hashlib.sha256()
    n = 0
    with _reading(info):
        stream = zf.open(capped)
    with stream:
        while True:
            with _reading(info):
                chunk = stream.read(min(_CHUNK, declared + 1 - n))
            if not chunk:
                break
            n += len(chunk)
            if n > declared:
                raise BundleError(f"{short_name(info.filename)}: inflates past its declared size of {declared} bytes")
            digest.update(chunk)
            if out is not None:
                out.write(chunk)  # an error writing (a full disk) is not the entry's fault: it propagates as it is
    if n != declared:
        raise BundleError(f"{short_name(info.filename)}: ends after {n} of its declared {declared} bytes")
    return digest.hexdigest()


@contextlib.contextmanager
def _reading(info: zipfile.ZipInfo) -> Iterator[None]:
    """Turns an error reading the entry (a corrupt archive, a seek past its end) into a :class:`BundleError`."""
    try:
        yield
    except (OSError, *ZIP_ERRORS) as e:
        raise BundleError(f"{short_name(info.filename)}: corrupt entry ({e.__class__.__name__}: {e})") from e
