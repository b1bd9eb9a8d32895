"""Labelled synthetic demo data in 2D and 3D: deterministic from a seed, generated locally, never downloaded.

The 3D cases mimic an MRI volume: air around an elliptic "body" (background tissue), a large irregular "organ"
with random pose and size, and a brighter "lesion" inside or touching it; further blob classes when more classes
are asked for. Each tissue has its own intensity and texture (smoothed noise); the image is slightly blurred
(partial volume), multiplied by a smooth bias field, corrupted by Gaussian noise and finally mapped by a random
global scale and offset, so intensities carry no absolute meaning (as in MRI) and need per-volume normalisation.

The 2D images mimic fluorescence microscopy: cells (class 1) with a brighter nucleus (class 2) on a dark
background, under an uneven illumination field, in ``[0, 1]``.

All structures are blobs several voxels thick, so the classes are learnable from local intensity and texture
by a small U-Net; ``make_demo_dataset_3d`` / ``make_demo_dataset_2d`` write them as MSD-style folders.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

from unet_med.utils.io import atomic_path, atomic_write_json

__all__ = ["make_demo_dataset_2d", "make_demo_dataset_3d", "synthetic_image_2d", "synthetic_volume"]

MARKER = ".synthetic.json"
_GENERATOR_VERSION = 1  # bump when the generated data change, so existing sets are regenerated
_MAX_CLASSES = 8
_LPS = np.diag([-1.0, -1.0, 1.0])  # voxel axes towards left, posterior, superior in nibabel's RAS+ world


def _check_shape(shape: Sequence[int], dims: int, minimum: int) -> tuple[int, ...]:
    values = tuple(int(s) for s in shape)
    if len(values) != dims or any(s < minimum for s in values):
        raise ValueError(f"shape must be {dims} ints, each >= {minimum}, got {tuple(shape)!r}.")
    return values


def _check_args(num_classes: int, seed: int) -> None:
    if not 2 <= int(num_classes) <= _MAX_CLASSES:
        raise ValueError(f"num_classes must be between 2 and {_MAX_CLASSES} (background included), got {num_classes}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}.")


def _grid(shape: tuple[int, ...]) -> np.ndarray:
    """Normalised coordinates, shape ``(dims, *shape)``, in (-1, 1) along every axis."""
    axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) / (n / 2)) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    """A uniformly random proper rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((dims, dims)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cycles: float = 1.0, waves: int = 12) -> np.ndarray:
    """Low-frequency noise with zero mean and unit std, from random plane waves.

    A sum of ``waves`` cosines with random phases and about ``cycles`` periods across the field of view: smooth
    like an upsampled coarse grid, but several times cheaper than spline upsampling.
    """
    axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) / (n / 2)) for n in shape]
    field = np.zeros(shape, np.float32)
    for k, phase in zip(
        rng.normal(0.0, cycles * np.pi, (waves, len(shape))), rng.uniform(0, 2 * np.pi, waves), strict=True
    ):
        dot = sum(
            np.float32(ki) * ax.reshape([-1 if d == i else 1 for d in range(len(shape))])
            for i, (ki, ax) in enumerate(zip(k, axes, strict=True))
        )
        field += np.cos(dot + np.float32(phase))
    return (field - field.mean()) / (field.std() + 1e-8)


def _texture(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smoothed white noise with zero mean and unit std; ``sigma`` (voxels) sets the grain."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


def _level(coords: np.ndarray, center: np.ndarray, semi_axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Ellipsoidal radius of every point (1 on the surface of the ellipsoid), shape ``coords.shape[1:]``."""
    shifted = coords - center.reshape((-1,) + (1,) * (coords.ndim - 1)).astype(np.float32)
    local = np.tensordot(rotation.T.astype(np.float32), shifted, axes=1)
    scale = semi_axes.reshape((-1,) + (1,) * (coords.ndim - 1)).astype(np.float32)
    return np.sqrt(np.sum((local / scale) ** 2, axis=0))


def _blob(
    rng: np.random.Generator,
    coords: np.ndarray,
    center: np.ndarray,
    semi_axes: np.ndarray,
    wobble: float,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of a rotated (by default randomly) ellipsoid whose surface is perturbed by smooth noise."""
    rotation = _rotation(rng, coords.shape[0]) if rotation is None else rotation
    level = _level(coords, center, semi_axes, rotation)
    return level <= 1.0 + wobble * _smooth_noise(rng, coords.shape[1:])


def _bias_field(rng: np.random.Generator, coords: np.ndarray, strength: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(p(x))`` with ``p`` a random quadratic, ``max |p| = strength``."""
    dims = coords.shape[0]
    poly = sum(rng.standard_normal() * coords[i] for i in range(dims))
    for i in range(dims):
        for j in range(i, dims):
            poly = poly + 0.7 * rng.standard_normal() * coords[i] * coords[j]
    poly = poly - poly.mean()
    return np.exp(strength * poly / (np.abs(poly).max() + 1e-8)).astype(np.float32)


def _all_present(label: np.ndarray, num_classes: int, min_fraction: float) -> bool:
    counts = np.bincount(label.ravel(), minlength=num_classes)
    return bool(np.all(counts[:num_classes] >= min_fraction * label.size))


def _far_center(
    rng: np.random.Generator,
    dims: int,
    span: float,
    radius: float,
    avoid: list[tuple[np.ndarray, float]],
    tries: int = 40,
) -> np.ndarray:
    """Among ``tries`` random centres in ``[-span, span]``, the one farthest (relative to radii) from ``avoid``."""
    best, best_score = np.zeros(dims), -np.inf
    for _ in range(tries):
        c = rng.uniform(-span, span, dims)
        score = min((float(np.linalg.norm(c - a)) / (radius + r) for a, r in avoid), default=np.inf)
        if score > best_score:
            best, best_score = c, score
        if score >= 1.2:
            break
    return best


def synthetic_volume(
    shape: Sequence[int] = (64, 64, 48),
    num_classes: int = 3,
    seed: int = 0,
    noise_std: tuple[float, float] = (0.07, 0.12),
    bias_strength: tuple[float, float] = (0.2, 0.35),
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic MRI-like 3D volume and its label map.

    Label 0 is background (air and body tissue), 1 the "organ" (a large irregular ellipsoid with random pose and
    size), 2 the "lesion" (a brighter, more heterogeneous blob inside or touching the organ); classes 3 and up are
    further blobs away from the organ, each brighter than the last. Every class is present.

    Args:
        shape: spatial size, three ints >= 16.
        num_classes: number of classes, background included, 2 to 8.
        seed: non-negative seed; the same seed gives identical arrays.
        noise_std: range of the Gaussian noise std per case, relative to an organ/background contrast of ~0.3
            (before the global intensity scale).
        bias_strength: range of the bias field's amplitude per case: the field is ``exp(p)`` with ``p`` a random
            smooth quadratic, ``max |p|`` drawn from this range.

    Returns:
        ``(image, label)``: float32 and uint8 arrays of ``shape``; the image is in arbitrary MRI-like units
        (random global scale 200 to 2000 and offset 0 to 100 per case).

    Example::

        image, label = synthetic_volume((64, 64, 48), num_classes=3, seed=7)
        image.shape, label.max()  # (64, 64, 48), 2
    """
    shape = _check_shape(shape, 3, 16)
    _check_args(num_classes, seed)
    rng = np.random.default_rng(int(seed))
    coords = _grid(shape)
    for _ in range(10):
        label = np.zeros(shape, np.uint8)
        # body: an elliptic cylinder along the last axis, the rest is air
        body = _level(coords[:2], rng.uniform(-0.05, 0.05, 2), rng.uniform(0.8, 0.95, 2), np.eye(2))
        body = body <= 1.0 + 0.04 * _smooth_noise(rng, shape, cycles=0.7)
        organ_c, organ_a, organ_r = rng.uniform(-0.15, 0.15, 3), rng.uniform(0.45, 0.7, 3), _rotation(rng, 3)
        label[_blob(rng, coords, organ_c, organ_a, wobble=0.12, rotation=organ_r)] = 1
        avoid = [(organ_c, float(organ_a.max()))]
        for k in range(3, num_classes):
            a = rng.uniform(0.2, 0.3, 3)
            c = _far_center(rng, 3, 0.6, float(a.max()), avoid)
            avoid.append((c, float(a.max())))
            label[_blob(rng, coords, c, a, wobble=0.1)] = k
        if num_classes > 2:
            # centre at ellipsoidal radius 0 to 0.7 of the organ: inside it, or touching its surface
            direction = rng.standard_normal(3)
            offset = organ_r @ (organ_a * direction / np.linalg.norm(direction) * rng.uniform(0.0, 0.7))
            label[_blob(rng, coords, organ_c + offset, rng.uniform(0.24, 0.36, 3), wobble=0.1)] = 2
        if _all_present(label, num_classes, 0.002):
            break
    else:
        raise RuntimeError(f"could not place {num_classes} classes in shape {shape}; use fewer classes.")

    # tissue intensities (organ/background contrast ~0.3) with per-tissue texture
    fine, coarse = _texture(rng, shape, 1.0), _texture(rng, shape, 2.0)
    image = np.where(body, rng.uniform(0.27, 0.33) * (1 + 0.12 * coarse), 0.02).astype(np.float32)
    means = [0.0, rng.uniform(0.55, 0.65), rng.uniform(0.9, 1.05)] + [1.3 + 0.3 * (k - 3) for k in range(3, 8)]
    amps = [0.0, 0.05, 0.12] + [0.08] * 5
    for k in range(1, num_classes):
        tex = coarse if k >= 3 else fine
        mask = label == k
        image[mask] = means[k] * (1 + amps[k] * tex[mask])
    image = ndimage.gaussian_filter(image, 0.6)  # partial volume
    image *= _bias_field(rng, coords, rng.uniform(*bias_strength))
    image += rng.normal(0.0, rng.uniform(*noise_std), shape).astype(np.float32)
    scale = float(np.exp(rng.uniform(np.log(200), np.log(2000))))
    return (image * scale + rng.uniform(0, 100)).astype(np.float32), label


def synthetic_image_2d(
    shape: Sequence[int] = (256, 256),
    num_classes: int = 3,
    seed: int = 0,
    noise_std: tuple[float, float] = (0.03, 0.06),
    bias_strength: tuple[float, float] = (0.15, 0.3),
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescence-microscopy-like 2D image and its label map.

    Label 0 is background, 1 "cell" (cytoplasm of 4 to 8 irregular cells), 2 "nucleus" (a brighter, coarser
    textured blob inside each cell); classes 3 and up are small round bodies between the cells, each brighter
    than the last. Every class is present.

    Args:
        shape: spatial size ``(H, W)``, two ints >= 32.
        num_classes: number of classes, background included, 2 to 8.
        seed: non-negative seed; the same seed gives identical arrays.
        noise_std: range of the Gaussian noise std per image (cell/background contrast ~0.25).
        bias_strength: range of the illumination field's amplitude per image (see :func:`synthetic_volume`).

    Returns:
        ``(image, label)``: float32 in ``[0, 1]`` and uint8 arrays of ``shape``.

    Example::

        image, label = synthetic_image_2d((256, 256), seed=3)
        image.dtype, sorted(set(label.ravel()))  # float32, [0, 1, 2]
    """
    shape = _check_shape(shape, 2, 32)
    _check_args(num_classes, seed)
    rng = np.random.default_rng(int(seed))
    coords = _grid(shape)
    for _ in range(10):
        label = np.zeros(shape, np.uint8)
        cells: list[tuple[np.ndarray, float]] = []
        for _ in range(int(rng.integers(4, 9))):
            r = rng.uniform(0.15, 0.24)
            cells.append((_far_center(rng, 2, 0.75, r, cells), r))
        axes = [r * rng.uniform(0.75, 1.0, 2) for _, r in cells]
        for (c, _), a in zip(cells, axes, strict=True):
            label[_blob(rng, coords, c, a, wobble=0.1)] = 1
        if num_classes > 2:
            for (c, _), a in zip(cells, axes, strict=True):
                label[_blob(rng, coords, c + a * rng.uniform(-0.25, 0.25, 2), a * rng.uniform(0.4, 0.55), 0.06)] = 2
        avoid = list(cells)
        for k in range(3, num_classes):
            for _ in range(int(rng.integers(2, 5))):
                r = rng.uniform(0.06, 0.09)
                c = _far_center(rng, 2, 0.85, r, avoid)
                avoid.append((c, r))
                label[_blob(rng, coords, c, r * rng.uniform(0.8, 1.0, 2), wobble=0.05)] = k
        if _all_present(label, num_classes, 0.002):
            break
    else:
        raise RuntimeError(f"could not place {num_classes} classes in shape {shape}; use fewer classes.")

    granules, chromatin = _texture(rng, shape, 1.5), _texture(rng, shape, 3.0)
    image = (rng.uniform(0.04, 0.08) * (1 + 0.2 * granules)).astype(np.float32)
    means = [0.0, rng.uniform(0.28, 0.34), rng.uniform(0.55, 0.65)] + [0.75 + 0.05 * (k - 3) for k in range(3, 8)]
    for k, (mean, amp, tex) in enumerate(
        zip(means, [0, 0.2, 0.15] + [0.05] * 5, [granules, granules, chromatin] + [granules] * 5, strict=True)
    ):
        if 0 < k < num_classes:
            mask = label == k
            image[mask] = mean * (1 + amp * tex[mask])
    image = ndimage.gaussian_filter(image, 1.0)  # optical blur
    image *= _bias_field(rng, coords, rng.uniform(*bias_strength))  # uneven illumination
    image += rng.normal(0.0, rng.uniform(*noise_std), shape).astype(np.float32)
    image = image * rng.uniform(0.75, 1.15) + rng.uniform(0.0, 0.05)
    return np.clip(image, 0.0, 1.0).astype(np.float32), label


# ----------------------------------------------------------------------------------------------- dataset folders


def _case_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0])


def _case_names(num_cases: int) -> list[str]:
    width = max(3, len(str(num_cases - 1)))
    return [f"case_{i:0{width}d}" for i in range(num_cases)]


def _case_affine(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """LPS-oriented affine with a small random rotation (3 to 10 degrees) and a non-zero origin (mm)."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(3.0, 10.0))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues
    affine = np.eye(4)
    affine[:3, :3] = rotation @ _LPS @ np.diag(spacing)
    center = (np.asarray(shape) - 1) / 2
    affine[:3, 3] = rng.uniform(-40.0, 40.0, 3) + np.array([0.0, -20.0, 30.0]) - affine[:3, :3] @ center
    return affine


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)  # scanner coordinates
    img.set_sform(affine, code=1)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _is_complete(out_dir: Path, params: dict[str, Any]) -> bool:
    """Whether ``out_dir`` holds a full set written with exactly ``params``."""
    try:
        marker = json.loads((out_dir / MARKER).read_text())
        datalist = json.loads((out_dir / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    entries = datalist.get("training", [])
    return (
        marker == params
        and len(entries) == params["num_cases"]
        and all((out_dir / e[key]).is_file() for e in entries for key in ("image", "label"))
    )


def _build(out_dir: str | os.PathLike, params: dict[str, Any], write: Callable[[Path], dict[str, Any]]) -> Path:
    """Runs ``write(tmp_dir) -> dataset.json content`` in a temporary sibling and swaps it into ``out_dir``."""
    out_dir = Path(out_dir)
    params = json.loads(json.dumps(params))  # tuples -> lists, as read back from the marker
    if _is_complete(out_dir, params):
        return out_dir
    if out_dir.exists() and (not out_dir.is_dir() or (not (out_dir / MARKER).exists() and any(out_dir.iterdir()))):
        raise FileExistsError(f"{out_dir} exists and is not a synthetic data folder; choose another out_dir.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        atomic_write_json(tmp / "dataset.json", write(tmp))
        atomic_write_json(tmp / MARKER, params)  # last: a folder with the marker is complete
        if _is_complete(out_dir, params):  # another process finished first
            shutil.rmtree(tmp)
            return out_dir
        if out_dir.exists():  # move the stale set aside: renaming onto a non-empty folder is not possible
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _datalist(
    name: str, description: str, dims: int, modality: str, labels: list[str], entries: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "reference": "generated by unet_med.data.synthetic",
        "licence": "CC0-1.0",
        "tensorImageSize": f"{dims}D",
        "modality": {"0": modality},
        "labels": {str(i): n for i, n in enumerate(labels)},
        "numTraining": len(entries),
        "numTest": 0,
        "training": entries,
        "test": [],
    }


def make_demo_dataset_3d(
    out_dir: str | os.PathLike,
    num_cases: int = 24,
    shape: Sequence[int] = (64, 64, 48),
    spacing: Sequence[float] = (1.2, 1.2, 2.5),
    num_classes: int = 3,
    seed: int = 0,
) -> Path:
    """Writes (or finds) an MSD-style folder of synthetic MRI-like cases from :func:`synthetic_volume`.

    Layout: ``dataset.json``, ``imagesTr/case_000.nii.gz`` (float32), ``labelsTr/case_000.nii.gz`` (uint8) and
    the marker ``.synthetic.json`` with the generation parameters. Each case has ``spacing`` (mm) in its header
    and an LPS-oriented affine (``nib.aff2axcodes`` gives ``('L', 'P', 'S')``) with a small random rotation and a
    non-zero origin, stored as qform and sform. Case ``i`` is generated from a seed derived from ``(seed, i)``.

    Idempotent and atomic: if ``out_dir`` already holds a complete set made with the same parameters it is
    returned untouched; otherwise the set is written into a temporary sibling folder that then replaces
    ``out_dir``. A non-empty ``out_dir`` without the marker is never overwritten (``FileExistsError``).

    Args:
        out_dir: the dataset folder.
        num_cases: number of cases, >= 1.
        shape: spatial size of every case.
        spacing: voxel size in mm along the three array axes.
        num_classes: number of classes, background included, 2 to 8.
        seed: non-negative base seed.

    Returns:
        ``Path(out_dir)``.

    Example::

        root = make_demo_dataset_3d("data/synthetic3d")
        monai.data.load_decathlon_datalist(root / "dataset.json", base_dir=root)[0]["image"]
    """
    shape = _check_shape(shape, 3, 16)
    _check_args(num_classes, seed)
    spacing = tuple(float(s) for s in spacing)
    if int(num_cases) < 1 or len(spacing) != 3 or any(not s > 0 for s in spacing):
        raise ValueError(f"need num_cases >= 1 and 3 positive spacings, got {num_cases} and {spacing!r}.")
    params = {
        "generator": "unet_med.data.synthetic",
        "version": _GENERATOR_VERSION,
        "dims": 3,
        "num_cases": int(num_cases),
        "shape": shape,
        "spacing": spacing,
        "num_classes": int(num_classes),
        "seed": int(seed),
    }

    def write(root: Path) -> dict[str, Any]:
        entries = []
        for i, name in enumerate(_case_names(int(num_cases))):
            image, label = synthetic_volume(shape, num_classes, _case_seed(seed, i))
            affine = _case_affine(np.random.default_rng([int(seed), i, 1]), shape, spacing)
            _save_nifti(image, affine, root / "imagesTr" / f"{name}.nii.gz")
            _save_nifti(label, affine, root / "labelsTr" / f"{name}.nii.gz")
            entries.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
        labels = ["background", "organ", "lesion"] + [f"structure_{k}" for k in range(3, num_classes)]
        return _datalist(
            "SyntheticMRI",
            "Synthetic MRI-like volumes: organ and lesion blobs with texture, bias field and noise",
            3,
            "synthetic MRI",
            labels[:num_classes],
            entries,
        )

    return _build(out_dir, params, write)


def make_demo_dataset_2d(
    out_dir: str | os.PathLike,
    num_cases: int = 20,
    shape: Sequence[int] = (256, 256),
    num_classes: int = 3,
    fmt: str = "png",
    seed: int = 0,
) -> Path:
    """Writes (or finds) a folder of synthetic microscopy images from :func:`synthetic_image_2d`.

    Layout: ``dataset.json`` (``tensorImageSize`` "2D"), ``imagesTr/case_000.png`` and ``labelsTr/case_000.png``
    (8-bit; ``fmt="tif"``: a 16-bit image and an 8-bit label written by tifffile), and the marker
    ``.synthetic.json``. Idempotent and atomic like :func:`make_demo_dataset_3d`.

    Args:
        out_dir: the dataset folder.
        num_cases: number of images, >= 1.
        shape: ``(H, W)`` of every image.
        num_classes: number of classes, background included, 2 to 8.
        fmt: ``"png"`` or ``"tif"``.
        seed: non-negative base seed.

    Returns:
        ``Path(out_dir)``.

    Example::

        root = make_demo_dataset_2d("data/synthetic2d", fmt="tif")
    """
    shape = _check_shape(shape, 2, 32)
    _check_args(num_classes, seed)
    if fmt not in ("png", "tif"):
        raise ValueError(f"fmt must be 'png' or 'tif', got {fmt!r}.")
    if int(num_cases) < 1:
        raise ValueError(f"num_cases must be >= 1, got {num_cases}.")
    params = {
        "generator": "unet_med.data.synthetic",
        "version": _GENERATOR_VERSION,
        "dims": 2,
        "num_cases": int(num_cases),
        "shape": shape,
        "num_classes": int(num_classes),
        "fmt": fmt,
        "seed": int(seed),
    }

    def write(root: Path) -> dict[str, Any]:
        entries = []
        for i, name in enumerate(_case_names(int(num_cases))):
            image, label = synthetic_image_2d(shape, num_classes, _case_seed(seed, i))
            if fmt == "png":
                image = np.round(image * 255).astype(np.uint8)
            else:
                image = np.round(image * 65535).astype(np.uint16)
            for folder, array in (("imagesTr", image), ("labelsTr", label)):
                with atomic_path(root / folder / f"{name}.{fmt}") as tmp:
                    if fmt == "png":
                        Image.fromarray(array).save(tmp, format="PNG")
                    else:
                        tifffile.imwrite(tmp, array)
            entries.append({"image": f"./imagesTr/{name}.{fmt}", "label": f"./labelsTr/{name}.{fmt}"})
        labels = ["background", "cell", "nucleus"] + [f"structure_{k}" for k in range(3, num_classes)]
        return _datalist(
            "SyntheticMicroscopy",
            "Synthetic fluorescence-like images: cells with nuclei",
            2,
            "synthetic fluorescence microscopy",
            labels[:num_classes],
            entries,
        )

    return _build(out_dir, params, write)
