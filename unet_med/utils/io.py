"""Atomic file output: a temp file in the target's folder, renamed over the target only when complete."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_save_dicom", "atomic_write_json"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is renamed to ``path``, on error removed.

    The temporary name keeps ``path``'s suffixes (or ``suffix`` when given) so writers that infer the format from
    the extension (nibabel, SimpleITK, PIL) still work. Readers never see a half-written file.

    Example::

        with atomic_path("out/case_001.nii.gz") as tmp:
            nib.save(img, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Writes ``obj`` as JSON to ``path`` atomically and returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False) + "\n")
    return Path(path)


def atomic_save_dicom(dataset: Any, path: str | os.PathLike) -> Path:
    """Writes a pydicom ``Dataset`` (or a highdicom object) to ``path`` as a DICOM file (preamble and file meta
    enforced), atomically; returns the path."""
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return Path(path)
