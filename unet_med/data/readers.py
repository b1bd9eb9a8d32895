"""Format-aware image readers: a cheap header read and a full data read, with one geometry convention.

Every reader reports geometry the way nibabel does: array axes are the image's ``i, j, k`` index axes (spatial
axes first, channels last) and the 4x4 affine maps a voxel index to RAS+ world millimetres. Formats:

- NIfTI (``.nii``, ``.nii.gz``) through nibabel. A 4D (or 5D) file counts its extra axes as channels, as the
  Medical Segmentation Decathlon stores multi-modal images.
- NRRD, MetaImage and friends (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) through SimpleITK. ITK works in LPS, so
  the affine built from direction, spacing and origin gets its first two rows negated; ITK's ``(z, y, x)`` array
  is transposed back to ``(x, y, z)``. Vector pixels become channels.
- PNG, JPEG, BMP (2D) through Pillow and TIFF through tifffile, with an identity affine (1 unit spacing). Axes are
  ``(rows, columns)``; RGB(A) samples are channels. A multi-page TIFF counts its pages as a third spatial axis.

A file that cannot be read (missing, truncated, corrupt) raises :class:`ImageReadError` naming the file.

Reading stays within bounds (docs/memory.md): :func:`read_array` checks the header before it reads any voxel, and
refuses a scan with more than ``max_voxels`` voxels (spatial voxels times channels, default
:data:`MAX_SCAN_VOXELS`) with :class:`ScanTooLarge`. A NIfTI or single-file NRRD/MetaImage header that promises more
data than the file can hold (more than the file's size uncompressed, more than deflate's 1032:1 ratio allows
compressed) is an :class:`ImageReadError` from :func:`read_header` already. A gzip stream is never inflated past
what the (checked) header promises: nibabel reads exactly ``vox_offset + nbytes`` from it, so a small header over a
stream of gigabytes of zeros costs only the header's size.

Example::

    info = read_header("imagesTr/hippocampus_001.nii.gz")
    info.shape, info.channels, info.spacing  # ((35, 51, 35), 1, (1.0, 1.0, 1.0))
    data, affine = read_array("imagesTr/hippocampus_001.nii.gz")  # data.shape == (35, 51, 35)
    data, affine = read_array("images/cells.png")  # 2D RGB: data.shape == (256, 256, 3), affine == np.eye(4)
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import cast

import numpy as np

__all__ = [
    "MAX_SCAN_VOXELS",
    "SUPPORTED_SUFFIXES",
    "ImageInfo",
    "ImageReadError",
    "ScanTooLarge",
    "check_size",
    "image_suffix",
    "read_array",
    "read_header",
]

_NIFTI = (".nii.gz", ".nii")
_ITK = (".nrrd", ".nhdr", ".mha", ".mhd")
_PIL = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF = (".tiff", ".tif")
SUPPORTED_SUFFIXES: tuple[str, ...] = _NIFTI + _ITK + _PIL + _TIFF
"""File name endings the readers understand (lower case; ``.nii.gz`` before ``.nii``)."""

# Pillow mode -> numpy dtype of one sample; the band count comes from ``Image.getbands()``.
_PIL_DTYPES = {"1": "bool", "I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I": "int32", "F": "float32"}
# TIFF axis letters that hold samples or channels rather than space (tifffile's series axes).
_TIFF_CHANNEL_AXES = "SC"
#: Most voxels (spatial voxels x channels) a scan may have before it is read: 2^30, e.g. a 512x512x4096 CT
#: (whole-body CTs at 0.5 mm are 512x512x~2000); 4 GiB as float32.
MAX_SCAN_VOXELS = 1 << 30
# Deflate's largest compression ratio is 1032:1: a compressed stream of n bytes holds at most ~1032 n bytes.
_DEFLATE_MAX_RATIO = 1032


class ImageReadError(OSError):
    """A file exists but cannot be read as an image (corrupt, truncated, or not the format its name says)."""


class ScanTooLarge(ImageReadError):
    """A scan whose header promises more voxels than the reader's ``max_voxels`` allows."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image, without reading the voxel data.

    Attributes:
        path: the file.
        shape: spatial size, one entry per spatial axis (2 for a 2D image, 3 for a volume).
        channels: number of channels (1 for a plain grey image or label map).
        spacing: voxel size per spatial axis, in the file's units (mm for medical formats, 1.0 for 2D pictures).
        affine: 4x4 float64 voxel-index-to-RAS+ matrix (identity for PNG/TIFF).
        dtype: numpy dtype of the stored samples (before any NIfTI slope/intercept scaling).
    """

    path: Path
    shape: tuple[int, ...]
    channels: int
    spacing: tuple[float, ...]
    affine: np.ndarray
    dtype: np.dtype

    @property
    def spatial_dims(self) -> int:
        """Number of spatial axes (2 or 3 for the images this library handles)."""
        return len(self.shape)


def image_suffix(path: str | os.PathLike) -> str | None:
    """Returns the supported suffix ``path`` ends with (lower case, ``.nii.gz`` whole), or ``None``."""
    name = Path(path).name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if name.endswith(s)), None)


def read_header(path: str | os.PathLike) -> ImageInfo:
    """Reads shape, channels, spacing, affine and dtype from the file's header, without loading the voxels.

    A truncated compressed file may pass this check: only :func:`read_array` proves the data are complete.

    Args:
        path: image file with one of :data:`SUPPORTED_SUFFIXES`.

    Returns:
        The image's :class:`ImageInfo`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the suffix is not a supported image format.
        ImageReadError: the header cannot be parsed.
    """
    return _read(path, with_data=False)[0]


def check_size(
    path: str | os.PathLike, shape: tuple[int, ...], channels: int, max_voxels: int | None = MAX_SCAN_VOXELS
) -> None:
    """Refuses a scan of ``shape`` x ``channels`` voxels when that is more than ``max_voxels`` (``None``: no limit).

    Raises:
        ScanTooLarge: one line naming the file, its size from the header, and the limit.
    """
    voxels = math.prod(int(s) for s in shape) * int(channels)
    if max_voxels is not None and voxels > max_voxels:
        size = "x".join(str(int(s)) for s in shape) + (f" x {channels} channels" if channels > 1 else "")
        raise ScanTooLarge(
            f"{path}: the header promises {size} = {voxels:,} voxels, more than the limit of {max_voxels:,} "
            "voxels per scan (raise it with --max-voxels if the scan is real)"
        )


def read_array(path: str | os.PathLike, max_voxels: int | None = MAX_SCAN_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """Loads the full voxel array and its affine, after checking the header (see :func:`check_size`).

    Args:
        path: image file with one of :data:`SUPPORTED_SUFFIXES`.
        max_voxels: most voxels (spatial x channels) to read; ``None`` for no limit.

    Returns:
        ``(data, affine)``: ``data`` has the spatial axes first and, when the image has more than one channel, the
        channels last (shape ``(*info.shape, info.channels)``); NIfTI slope/intercept scaling is applied. ``affine``
        is the 4x4 voxel-to-RAS+ matrix.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the suffix is not a supported image format.
        ImageReadError: the file is corrupt or truncated.
        ScanTooLarge: the header promises more than ``max_voxels`` voxels (nothing of the data is read).
    """
    info = read_header(path)
    check_size(path, info.shape, info.channels, max_voxels)
    info, data = _read(path, with_data=True)
    return cast(np.ndarray, data), info.affine


def _read(path: str | os.PathLike, with_data: bool) -> tuple[ImageInfo, np.ndarray | None]:
    """Dispatches on the suffix; wraps every reader failure in an :class:`ImageReadError` naming the file."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: unsupported image format; expected one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return _READERS[suffix](path, with_data)
    except (ImageReadError, MemoryError):
        raise
    except Exception as exc:  # each library has its own exception zoo (EOFError, zlib.error, RuntimeError, ...)
        what = "data" if with_data else "header"
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the library printed
        raise ImageReadError(f"{path}: unreadable or truncated file, cannot read its {what} ({detail})") from exc


def _check_fits(path: Path, offset: int, nbytes: int, compressed: bool) -> None:
    """Refuses a header that promises more data than a file of this size can hold."""
    size = path.stat().st_size
    room = _DEFLATE_MAX_RATIO * size + (64 << 10) if compressed else size
    if offset + nbytes > room:
        holds = f"a {size:,}-byte {'compressed ' if compressed else ''}file holds at most {room:,}"
        raise ImageReadError(f"{path}: the header promises {offset + nbytes:,} bytes of data; {holds} (a lying header)")


def _deflate_or_raw(path: Path) -> bool:
    """Whether ``path`` is a MetaImage or NRRD holding its own data, raw or zlib/gzip-compressed (not bzip2)."""
    suffix = path.suffix.lower()
    if suffix not in (".mha", ".nrrd"):
        return False
    with path.open("rb") as f:
        head = f.read(4096).split(b"\n\n", 1)[0].lower() + b"\n"  # a NRRD header ends with an empty line
    if suffix == ".mha":
        return b"elementdatafile = local" in head
    return b"data file:" not in head and any(f"encoding: {e}\n".encode() in head for e in ("raw", "gz", "gzip"))


def _read_nifti(path: Path, with_data: bool) -> tuple[ImageInfo, np.ndarray | None]:
    import nibabel as nib

    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageReadError(f"{path}: not a NIfTI image (nibabel read it as {type(img).__name__})")
    full_shape = tuple(int(s) for s in img.shape)
    nbytes = math.prod(full_shape) * np.dtype(img.get_data_dtype()).itemsize
    _check_fits(path, int(img.header.get_data_offset()), nbytes, compressed=path.name.lower().endswith(".gz"))
    spatial = full_shape[:3]
    channels = int(np.prod(full_shape[3:], dtype=np.int64)) if len(full_shape) > 3 else 1
    zooms = img.header.get_zooms()[: len(spatial)]
    info = ImageInfo(
        path=path,
        shape=spatial,
        channels=channels,
        spacing=tuple(float(z) for z in zooms),
        affine=np.asarray(img.affine, dtype=np.float64),
        dtype=np.dtype(img.get_data_dtype()),
    )
    if not with_data:
        return info, None
    data = np.asarray(img.dataobj)
    if data.ndim > 4:  # (x, y, z, t, c) and friends: fold the non-spatial axes into one channel axis
        data = data.reshape((*spatial, channels))
    return info, data


def _itk_dtype(pixel_id: int) -> np.dtype:
    import SimpleITK as sitk

    for kind in ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float32", "Float64"):
        if pixel_id in (getattr(sitk, f"sitk{kind}"), getattr(sitk, f"sitkVector{kind}")):
            return np.dtype(kind.lower())
    return np.dtype(object)


def _read_itk(path: Path, with_data: bool) -> tuple[ImageInfo, np.ndarray | None]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    dims = reader.GetDimension()
    shape = tuple(int(s) for s in reader.GetSize())
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dims, dims)
    affine = np.eye(4)
    k = min(dims, 3)
    affine[:k, :k] = (direction * spacing)[:k, :k]
    affine[:k, 3] = np.asarray(reader.GetOrigin(), dtype=np.float64)[:k]
    affine[:2] *= -1.0  # LPS -> RAS: negate the x and y world rows (as nibabel does for ITK-made files)
    affine += 0.0  # no negative zeros in the printed matrix
    channels = int(reader.GetNumberOfComponents())
    if _deflate_or_raw(path):
        nbytes = math.prod(shape) * channels * _itk_dtype(reader.GetPixelID()).itemsize
        _check_fits(path, 0, nbytes, compressed=True)
    info = ImageInfo(path, shape, channels, tuple(float(s) for s in spacing), affine, _itk_dtype(reader.GetPixelID()))
    if not with_data:
        return info, None
    array = sitk.GetArrayFromImage(reader.Execute())  # (z, y, x[, c]) -> (x, y, z[, c])
    axes = tuple(reversed(range(dims))) + ((dims,) if array.ndim > dims else ())
    return info, np.ascontiguousarray(np.transpose(array, axes))


def _read_pil(path: Path, with_data: bool) -> tuple[ImageInfo, np.ndarray | None]:
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
        bands = len(img.getbands())
        dtype = np.dtype(_PIL_DTYPES.get(img.mode, "uint8"))
        info = ImageInfo(path, (height, width), bands, (1.0, 1.0), np.eye(4), dtype)
        if not with_data:
            return info, None
        img.load()  # raises on a truncated file instead of padding it
        return info, np.asarray(img)


def _read_tiff(path: Path, with_data: bool) -> tuple[ImageInfo, np.ndarray | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageReadError(f"{path}: TIFF holds no image series")
        series = tif.series[0]
        axes, shape = series.axes, tuple(int(s) for s in series.shape)
        channel_axes = [i for i, a in enumerate(axes) if a in _TIFF_CHANNEL_AXES]
        spatial_axes = [i for i in range(len(shape)) if i not in channel_axes]
        spatial = tuple(shape[i] for i in spatial_axes)
        channels = int(np.prod([shape[i] for i in channel_axes], dtype=np.int64)) if channel_axes else 1
        info = ImageInfo(path, spatial, channels, (1.0,) * len(spatial), np.eye(4), np.dtype(series.dtype))
        if not with_data:
            return info, None
        data = series.asarray()
    data = np.transpose(data, spatial_axes + channel_axes)
    if len(channel_axes) > 1:
        data = data.reshape((*spatial, channels))
    return info, data


_READERS = {
    **dict.fromkeys(_NIFTI, _read_nifti),
    **dict.fromkeys(_ITK, _read_itk),
    **dict.fromkeys(_PIL, _read_pil),
    **dict.fromkeys(_TIFF, _read_tiff),
}
