"""Hostile scans for the bounds tests, built in a few milliseconds each: headers that promise gigabytes (with or
without the gigabytes of zeros behind them, as concatenated gzip members) and headers that lie about the length."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

# 64 MiB of zeros as one gzip member (~65 kB): repeated, it makes gigabytes of stream in megabytes of file.
_ZEROS_MIB = 64


def nifti_header(shape: tuple[int, ...], dtype: str = "float32") -> bytes:
    """A NIfTI-1 header (352 bytes with its extension flag) for ``shape`` and ``dtype``, 1 mm spacing."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.dtype(dtype))
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def zeros_members(nbytes: int) -> bytes:
    """At least ``nbytes`` of zeros as concatenated gzip members (whole 64 MiB members)."""
    member = gzip.compress(b"\0" * (_ZEROS_MIB << 20), compresslevel=9)
    return member * -(-nbytes // (_ZEROS_MIB << 20))


def promising_nifti_gz(path: Path, shape: tuple[int, ...], dtype: str = "float32", data: bool = True) -> Path:
    """A ``.nii.gz`` whose header promises ``shape`` x ``dtype``; with ``data``, the zeros are really there."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    path.write_bytes(gzip.compress(nifti_header(shape, dtype)) + (zeros_members(nbytes) if data else b""))
    return path


def lying_nifti(path: Path, shape: tuple[int, ...], holds_bytes: int, dtype: str = "float32") -> Path:
    """A NIfTI (``.nii`` or ``.nii.gz`` by name) whose header promises ``shape`` but which holds ``holds_bytes``."""
    rng = np.random.default_rng(0)  # random bytes: incompressible, so a .gz is no smaller than its content
    raw = nifti_header(shape, dtype) + rng.integers(0, 256, holds_bytes, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.name.endswith(".gz") else raw)
    return path


def small_nifti_over_a_bomb(path: Path, shape: tuple[int, ...], trailing_bytes: int) -> Path:
    """A valid small ``.nii.gz`` (uint8 ones) whose gzip stream goes on with ``trailing_bytes`` of zeros."""
    data = np.ones(shape, dtype=np.uint8).tobytes(order="F")
    path.write_bytes(gzip.compress(nifti_header(shape, "uint8") + data) + zeros_members(trailing_bytes))
    return path
