"""Writing predictions in the input's own geometry and format, atomically.

The array comes in MONAI's axis order (the reader's index axes, channels last here) with the voxel-to-RAS affine
that MONAI's ``Invertd`` restored. The format follows the input:

- NIfTI in, NIfTI out (same affine, so shape, spacing, direction and origin match).
- NRRD / MetaImage in, the same format out, with ITK's spacing, direction and origin (LPS) from the affine.
- A DICOM series folder (or a single ``.dcm``) in: NIfTI out, in the series' geometry, named by the series'
  SeriesInstanceUID (:func:`case_name`).
- PNG / JPEG / BMP in: PNG out; TIFF in: TIFF out (same number of rows and columns).

Probabilities (float32, one channel per class) go to NIfTI / NRRD / MetaImage as a vector image, and for 2D
inputs to a float32 TIFF.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unet_med.data.readers import image_suffix
from unet_med.data.sitk_reader import itk_geometry_from_affine
from unet_med.inference.cases import dicom_series_ids
from unet_med.utils.io import atomic_path

__all__ = ["case_name", "output_path", "write_image"]

_SAME = {".nii.gz": ".nii.gz", ".nii": ".nii.gz", ".nrrd": ".nrrd", ".nhdr": ".nrrd", ".mha": ".mha", ".mhd": ".mha"}
_2D = {".png": ".png", ".jpg": ".png", ".jpeg": ".png", ".bmp": ".png", ".tif": ".tif", ".tiff": ".tif"}


def case_name(path: str | os.PathLike, series_uid: str | None = None) -> str:
    """The case's name: the file name without its image suffix; for a DICOM series folder its SeriesInstanceUID
    (``series_uid`` when one series of a folder holding several was chosen).

    A series is named by its UID, not by its folder: folders are often named after the patient, or the same for
    every patient (``CT/image``), while the UID is unique and identifies no one.
    """
    path = Path(path)
    if path.is_dir():
        if series_uid:
            return _safe(series_uid)
        ids = dicom_series_ids(path)
        return _safe(ids[0]) if ids else path.name
    suffix = image_suffix(path) if path.is_file() or not path.exists() else None
    name = path.name
    if suffix is None and name.lower().endswith(".dcm"):
        suffix = ".dcm"
    return name[: -len(suffix)] if suffix else name


def _safe(name: str) -> str:
    """Only letters, digits, ``.``, ``-`` and ``_`` in a file name made from a header value."""
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in name.strip())[:128] or "series"


def output_path(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    postfix: str = "seg",
    probabilities: bool = False,
    series_uid: str | None = None,
) -> Path:
    """Where the prediction for ``input_path`` goes: ``output_dir/<case>_<postfix><suffix>``.

    Example::

        output_path("scans/ct_001.nii.gz", "out")  # out/ct_001_seg.nii.gz
        output_path("scans/lung1.nrrd", "out")  # out/lung1_seg.nrrd
        output_path("dicom/CT/image", "out")  # out/<SeriesInstanceUID>_seg.nii.gz
        output_path("cells/a.png", "out", probabilities=True, postfix="prob")  # out/a_prob.tif
    """
    suffix = image_suffix(input_path) if Path(input_path).is_file() else None
    if suffix in _2D:
        out_suffix = ".tif" if probabilities else _2D[suffix]
    else:
        out_suffix = _SAME.get(suffix or "", ".nii.gz")  # DICOM series or .dcm -> NIfTI
    return Path(output_dir) / f"{case_name(input_path, series_uid)}_{postfix}{out_suffix}"


def write_image(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, spatial_dims: int) -> Path:
    """Writes ``array`` (spatial axes in MONAI order, then an optional channel axis) to ``path`` atomically.

    Args:
        array: ``(X, Y[, Z][, C])``; uint8 for masks, float32 for probabilities.
        affine: the voxel-to-RAS affine, ``(d+1, d+1)`` or ``(4, 4)``.
        path: output file; the format comes from its suffix (see :func:`output_path`).
        spatial_dims: 2 or 3, to tell a channel axis from a spatial one.

    Raises:
        ValueError: an unsupported output suffix.
    """
    path = Path(path)
    suffix = image_suffix(path)
    with atomic_path(path) as tmp:
        if suffix in (".nii.gz", ".nii"):
            _write_nifti(array, affine, tmp, spatial_dims)
        elif suffix in (".nrrd", ".mha"):
            _write_itk(array, affine, tmp, spatial_dims)
        elif suffix == ".png":
            from PIL import Image

            Image.fromarray(_rows_first(array)).save(tmp, format="PNG")
        elif suffix == ".tif":
            import tifffile

            if spatial_dims == 3:  # a stack of sections: (X, Y, Z) -> pages (Z, Y, X)
                tifffile.imwrite(tmp, np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
            else:
                tifffile.imwrite(tmp, _rows_first(array))
        else:
            raise ValueError(f"{path}: cannot write this format")
    return path


def _rows_first(array: np.ndarray) -> np.ndarray:
    """MONAI's 2D ``(columns, rows[, C])`` back to a picture's ``(rows, columns[, C])``."""
    return np.ascontiguousarray(np.swapaxes(array, 0, 1))


def _affine_4x4(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape == (4, 4):
        return affine
    d = affine.shape[0] - 1
    out = np.eye(4)
    out[:d, :d] = affine[:d, :d]
    out[:d, 3] = affine[:d, d]
    return out


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path, spatial_dims: int) -> None:
    import nibabel as nib

    if spatial_dims == 2 and array.ndim == 3:  # (X, Y, C) -> (X, Y, 1, C), the NIfTI layout of a 2D vector image
        array = array[:, :, None, :]
    img = nib.Nifti1Image(array, _affine_4x4(affine))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, str(path))


def _write_itk(array: np.ndarray, affine: np.ndarray, path: Path, spatial_dims: int) -> None:
    import SimpleITK as sitk

    vector = array.ndim > spatial_dims
    axes = tuple(reversed(range(spatial_dims))) + ((spatial_dims,) if vector else ())
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, axes)), isVector=vector)
    a = np.asarray(affine, dtype=np.float64)
    if a.shape[0] - 1 != spatial_dims:
        a = a[np.ix_([*range(spatial_dims), -1], [*range(spatial_dims), -1])]
    spacing, direction, origin = itk_geometry_from_affine(a)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path), useCompression=True)
