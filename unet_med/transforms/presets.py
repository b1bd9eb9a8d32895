"""Preprocessing and augmentation presets built from MONAI dictionary transforms.

Preprocessing is deterministic and invertible (orientation, spacing, padding), so ``monai.transforms.Invertd`` can
map a prediction back to the input's own geometry. Intensity normalisation depends on the modality:

- ``"mri"``: z-score per channel within the foreground (intensity scales differ wildly between MRI cases):
  ``mri_foreground="nonzero"`` (MONAI's ``NormalizeIntensityd(nonzero=True)``, for zero backgrounds) or
  ``"above_min"`` (for backgrounds set to a constant negative value, as in skull-stripped BraTS).
- ``"ct"``: clip Hounsfield units to ``ct_window`` (a fixed window, or the foreground's 0.5-99.5 percentiles
  proposed by :mod:`unet_med.data.planning`) and scale it to [0, 1].
- ``"microscopy"``: each channel's 1st-99.8th percentiles scaled to [0, 1] (the same for 8- and 16-bit images,
  and robust to a few saturated pixels); use it with ``orientation=None`` and ``pixdim=None``.
- ``"none"``: no intensity change.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    DivisiblePadd,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    KeepLargestConnectedComponentd,
    LoadImage,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandCropByLabelClassesd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)
from monai.transforms.transform import MapTransform

from unet_med.data.sitk_reader import SITKReader
from unet_med.transforms.intensity import ZScoreForegroundd
from unet_med.utils.quiet import monai_readers_quiet

__all__ = [
    "inference_postprocessing",
    "load_like_preprocessing",
    "preprocessing",
    "strong_augmentation",
    "train_augmentation",
]

MODALITIES = ("mri", "ct", "microscopy", "none")


def load_like_preprocessing(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A file read as :func:`preprocessing` reads it (MONAI's ``LoadImage`` with the SITK reader registered):
    ``(array, affine)``, in MONAI's axis order, which for PNG and JPEG pictures is (columns, rows). A label map
    scored against a prediction mapped back by ``Invertd`` must be read this way, not as a picture."""
    with monai_readers_quiet():  # no GPU DICOM decoder: nothing to say
        loader = LoadImage(image_only=True)
    loader.register(SITKReader())
    image = loader(str(path))
    return np.asarray(image), np.asarray(image.affine)


def preprocessing(
    keys: Sequence[str] = ("image", "label"),
    image_key: str = "image",
    modality: str = "mri",
    pixdim: Sequence[float] | None = None,
    orientation: str | None = "RAS",
    divisible_by: int | Sequence[int] | None = None,
    ct_window: Sequence[float] = (-1000.0, 1000.0),
    mri_foreground: str = "nonzero",
    load: bool = True,
) -> Compose:
    """Deterministic preprocessing: load, channel first, reorient, resample, normalise, pad.

    Args:
        keys: image and (optionally) label keys. Keys other than ``image_key`` are treated as label maps
            (nearest-neighbour resampling, no normalisation).
        image_key: the key of the image.
        modality: ``"mri"``, ``"ct"``, ``"microscopy"`` or ``"none"`` (see the module docstring).
        pixdim: target voxel spacing in mm, or ``None`` to keep the input spacing.
        orientation: target axis codes (``"RAS"``), or ``None`` to keep the input orientation.
        divisible_by: pad the spatial size to a multiple of this (the network's total pooling factor), so whole
            volumes can be passed to the network; ``None`` for no padding.
        ct_window: Hounsfield window ``(low, high)`` for ``modality="ct"``.
        mri_foreground: the voxels the MRI z-score is computed over: ``"nonzero"`` or ``"above_min"``.
        load: prepend ``LoadImaged`` (set ``False`` when the data is already loaded); NIfTI is read with nibabel,
            NRRD, MetaImage, TIFF and DICOM series folders with SimpleITK.

    Returns:
        A ``Compose`` of MONAI dictionary transforms.

    Example::

        pre = preprocessing(("image", "label"), modality="mri", pixdim=(1.0, 1.0, 2.0))
        sample = pre({"image": "case_000.nii.gz", "label": "case_000_seg.nii.gz"})
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    if mri_foreground not in ("nonzero", "above_min"):
        raise ValueError(f"mri_foreground must be 'nonzero' or 'above_min', got {mri_foreground!r}.")
    keys = list(keys)
    if image_key not in keys:
        raise ValueError(f"image_key {image_key!r} must be one of keys {keys}.")
    label_keys = [k for k in keys if k != image_key]
    modes = ["bilinear" if k == image_key else "nearest" for k in keys]
    transforms: list[MapTransform] = []
    if load:
        with monai_readers_quiet():  # no GPU DICOM decoder: nothing to say
            loader = LoadImaged(keys=keys, image_only=True)
        loader.register(SITKReader())  # NRRD, MetaImage, TIFF and DICOM folders (MONAI's ITKReader needs `itk`)
        transforms.append(loader)
    transforms.append(EnsureChannelFirstd(keys=keys))
    if orientation:
        transforms.append(Orientationd(keys=keys, axcodes=orientation, labels=None))
    if pixdim is not None:
        transforms.append(Spacingd(keys=keys, pixdim=list(pixdim), mode=modes, dtype="float32"))
    if modality == "mri" and mri_foreground == "nonzero":
        transforms.append(NormalizeIntensityd(keys=image_key, nonzero=True, channel_wise=True))
    elif modality == "mri":
        transforms.append(ZScoreForegroundd(keys=image_key))
    elif modality == "ct":
        low, high = ct_window
        transforms.append(ScaleIntensityRanged(keys=image_key, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True))
    elif modality == "microscopy":
        transforms.append(
            ScaleIntensityRangePercentilesd(
                keys=image_key, lower=1.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
            )
        )
    if divisible_by is not None:
        transforms.append(DivisiblePadd(keys=keys, k=divisible_by))
    transforms.append(EnsureTyped(keys=image_key, dtype="float32", track_meta=True))
    if label_keys:
        transforms.append(EnsureTyped(keys=label_keys, dtype="uint8", track_meta=True))
    return Compose(transforms)


def train_augmentation(
    patch_size: Sequence[int],
    num_classes: int,
    num_samples: int = 2,
    image_key: str = "image",
    label_key: str = "label",
    ratios: Sequence[float] | None = None,
    flip_axes: Sequence[int] | None = None,
    rotate90: bool = True,
) -> Compose:
    """Random patch sampling balanced over classes, flips, 90-degree rotations and intensity jitter.

    Args:
        patch_size: spatial size of the training patches; smaller inputs are padded first.
        num_classes: number of label classes (background included).
        num_samples: patches drawn per loaded case.
        image_key: the key of the image.
        label_key: the key of the label map.
        ratios: sampling weight per class for patch centres (default: equal for every class).
        flip_axes: spatial axes to flip at random (default: all of them).
        rotate90: rotate by multiples of 90 degrees in the plane of the first two spatial axes (only when the
            patch is square in that plane, so every patch keeps ``patch_size``).

    Returns:
        A ``Compose`` to apply after :func:`preprocessing`.
    """
    keys = [image_key, label_key]
    axes = list(range(len(patch_size))) if flip_axes is None else list(flip_axes)
    transforms: list[MapTransform] = [
        SpatialPadd(keys=keys, spatial_size=list(patch_size)),
        RandCropByLabelClassesd(
            keys=keys,
            label_key=label_key,
            spatial_size=list(patch_size),
            num_classes=num_classes,
            ratios=list(ratios) if ratios is not None else [1.0] * num_classes,
            num_samples=num_samples,
            warn=False,
        ),
    ]
    transforms += [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in axes]
    if rotate90 and patch_size[0] == patch_size[1]:
        transforms.append(RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(0, 1)))
    transforms += [
        RandScaleIntensityd(keys=image_key, factors=0.1, prob=0.5),
        RandShiftIntensityd(keys=image_key, offsets=0.1, prob=0.5),
        RandGaussianNoised(keys=image_key, prob=0.15, std=0.05),
    ]
    return Compose(transforms)


def strong_augmentation(
    patch_size: Sequence[int],
    num_classes: int,
    num_samples: int = 2,
    image_key: str = "image",
    label_key: str = "label",
    foreground_fraction: float = 1.0 / 3.0,
) -> Compose:
    """Augmentation for small training sets (nnU-Net's kind): rotation and scaling, gamma, blur, low resolution.

    A crop a quarter larger than the patch is drawn (a third of the centres on a foreground class, shared equally
    between the classes, the rest on background), rotated and scaled about its centre by ``RandAffined`` into
    ``patch_size`` (so the corners rarely show padding), then flipped and given intensity changes. Rotation is in
    the plane of the first two axes when the patch is much thinner along the third (thick-slice CT or MRI), about
    every axis otherwise.

    Args:
        patch_size: spatial size of the training patches (2 or 3 entries).
        num_classes: number of label classes (background included).
        num_samples: patches drawn per loaded case.
        image_key: the key of the image.
        label_key: the key of the label map.
        foreground_fraction: share of patch centres on foreground classes, in (0, 1].

    Returns:
        A ``Compose`` to apply after :func:`preprocessing`.
    """
    if not 0.0 < foreground_fraction <= 1.0:
        raise ValueError(f"foreground_fraction {foreground_fraction} must be in (0, 1]")
    keys = [image_key, label_key]
    dims = len(patch_size)
    crop = [math.ceil(s * 1.25) for s in patch_size]
    background = (1.0 - foreground_fraction) / foreground_fraction * (num_classes - 1)
    angle = math.radians(15.0)
    if dims == 2:
        rotate: tuple[float, ...] | float = angle
    elif patch_size[2] * 2 < min(patch_size[0], patch_size[1]):
        rotate = (0.0, 0.0, angle)
    else:
        rotate = (angle, angle, angle)
    transforms: list[MapTransform] = [
        SpatialPadd(keys=keys, spatial_size=crop),
        RandCropByLabelClassesd(
            keys=keys,
            label_key=label_key,
            spatial_size=crop,
            num_classes=num_classes,
            ratios=[background] + [1.0] * (num_classes - 1),
            num_samples=num_samples,
            warn=False,
        ),
        RandAffined(
            keys=keys,
            spatial_size=list(patch_size),
            prob=1.0,
            rotate_range=rotate,
            scale_range=[0.15] * dims,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        ),
    ]
    transforms += [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(dims)]
    transforms += [
        RandScaleIntensityd(keys=image_key, factors=0.15, prob=0.5),
        RandShiftIntensityd(keys=image_key, offsets=0.1, prob=0.5),
        RandAdjustContrastd(keys=image_key, gamma=(0.7, 1.5), prob=0.3),
        RandGaussianSmoothd(keys=image_key, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.1),
        RandSimulateLowResolutiond(
            keys=image_key, zoom_range=(0.5, 1.0), prob=0.15, upsample_mode="trilinear" if dims == 3 else "bilinear"
        ),
        RandGaussianNoised(keys=image_key, prob=0.15, std=0.05),
    ]
    return Compose(transforms)


def inference_postprocessing(
    preprocess: Compose,
    pred_key: str = "pred",
    image_key: str = "image",
    invert: bool = True,
    save_probabilities: bool = False,
    keep_largest: Sequence[int] | None = None,
) -> Compose:
    """Softmax, argmax, and the inverse of ``preprocess`` so the mask lands in the input's own geometry.

    Args:
        preprocess: the preprocessing applied to ``image_key`` (from :func:`preprocessing`).
        pred_key: key of the network output (logits, ``(C, *spatial)`` per case after decollation).
        image_key: key of the preprocessed image whose applied operations are inverted.
        invert: whether to invert the preprocessing.
        save_probabilities: keep probabilities (softmax) instead of the argmax label map.
        keep_largest: labels for which only the largest connected component is kept (for example ``[1]`` for a
            single tumour per scan); ignored with ``save_probabilities``.
    """
    transforms: list[MapTransform] = [Activationsd(keys=pred_key, softmax=True)]
    if not save_probabilities:
        transforms.append(AsDiscreted(keys=pred_key, argmax=True))
        if keep_largest:
            transforms.append(
                KeepLargestConnectedComponentd(keys=pred_key, applied_labels=list(keep_largest), is_onehot=False)
            )
    if invert:
        transforms.append(
            Invertd(
                keys=pred_key,
                transform=preprocess,
                orig_keys=image_key,
                nearest_interp=not save_probabilities,
                to_tensor=True,
            )
        )
    return Compose(transforms)
