"""2D microscopy: augmentation in the spirit of the U-Net paper, and instances from a boundary class.

The U-Net paper trained on 30 EM sections by leaning on augmentation: smooth elastic deformations, shifts,
rotations and grey-value variation. :func:`microscopy_augmentation` builds that from MONAI transforms (one
``Rand2DElasticd`` does rotation, scaling and the elastic field in a single resampling).

Touching nuclei are separated with a third class: :func:`instances_to_classes` turns an instance map into
background / interior / boundary for training, and :func:`classes_to_instances` turns the predicted probabilities
back into instances (interior components are the seeds of a watershed over the foreground).

Example::

    classes = instances_to_classes(instance_map)  # 0 background, 1 interior, 2 boundary
    instances = classes_to_instances(probabilities)  # (3, H, W) softmax -> (H, W) int32 instance ids
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    CastToTyped,
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    MapTransform,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandCropByLabelClassesd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from scipy import ndimage
from skimage.segmentation import find_boundaries, watershed

from unet_med.transforms.border_weights import BorderWeightd

__all__ = [
    "ClassesToInstancesd",
    "InstancesToClassesd",
    "classes_to_instances",
    "instances_to_classes",
    "microscopy_augmentation",
]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def microscopy_augmentation(
    patch_size: Sequence[int],
    num_classes: int,
    num_samples: int = 1,
    image_key: str = "image",
    label_key: str = "label",
    ratios: Sequence[float] | None = None,
    elastic_prob: float = 0.7,
    elastic_spacing: float = 64.0,
    elastic_magnitude: Sequence[float] = (0.0, 8.0),
    scale_range: float = 0.1,
    border_weights: Mapping[str, Any] | None = None,
) -> Compose:
    """Random patches, flips, 90-degree turns, rotation + scaling + elastic deformation, grey-value jitter.

    Args:
        patch_size: ``(H, W)`` of the training patches; smaller images are padded first.
        num_classes: classes including background (for the class-balanced patch centres).
        num_samples: patches drawn per image.
        image_key: the key of the image (already scaled to about [0, 1]).
        label_key: the key of the class map.
        ratios: sampling weight per class for patch centres (default equal).
        elastic_prob: probability of the deformation (rotation by any angle, scaling, elastic field).
        elastic_spacing: pixels between the control points of the elastic field (the paper: a coarse 3x3 grid).
        elastic_magnitude: range of the control-point displacement's standard deviation, in pixels (the paper:
            10 pixels).
        scale_range: relative zoom range of the deformation.
        border_weights: arguments of :class:`~unet_med.transforms.BorderWeightd` (``border_class``, ``w0``,
            ``sigma``, ``keep_class_total``) for the U-Net paper's weighted loss: the weight map is computed from
            the whole image (first, so a ``CacheDataset`` keeps it), moved with the image by every spatial step,
            and appended to the label as a second channel for
            :class:`~unet_med.losses.PixelWeightedCrossEntropyLoss`.
    """
    if len(patch_size) != 2:
        raise ValueError(f"microscopy_augmentation is 2D: patch_size needs 2 entries, got {list(patch_size)}")
    weight_key = "weight"
    keys = [image_key, label_key] + ([weight_key] if border_weights is not None else [])
    patch = [int(p) for p in patch_size]
    transforms: list[MapTransform] = []
    if border_weights is not None:
        transforms.append(BorderWeightd(keys=label_key, weight_key=weight_key, **border_weights))
    transforms += [
        SpatialPadd(keys=keys, spatial_size=patch, mode="reflect"),
        RandCropByLabelClassesd(
            keys=keys,
            label_key=label_key,
            spatial_size=patch,
            num_classes=num_classes,
            ratios=list(ratios) if ratios is not None else [1.0] * num_classes,
            num_samples=num_samples,
            warn=False,
        ),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
    ]
    if patch[0] == patch[1]:  # quarter turns keep the patch size only when it is square
        transforms.append(RandRotate90d(keys=keys, prob=0.5, max_k=3))
    transforms += [
        Rand2DElasticd(
            keys=keys,
            spacing=(elastic_spacing, elastic_spacing),
            magnitude_range=(float(elastic_magnitude[0]), float(elastic_magnitude[1])),
            prob=elastic_prob,
            rotate_range=(math.pi,),
            scale_range=(scale_range, scale_range),
            spatial_size=(patch[0], patch[1]),
            mode=("bilinear", "nearest", "bilinear")[: len(keys)],
            padding_mode="reflection",
        ),
        RandAdjustContrastd(keys=image_key, prob=0.3, gamma=(0.7, 1.5)),
        RandScaleIntensityd(keys=image_key, factors=0.15, prob=0.5),
        RandShiftIntensityd(keys=image_key, offsets=0.1, prob=0.5),
        RandGaussianSmoothd(keys=image_key, prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
        RandGaussianNoised(keys=image_key, prob=0.15, std=0.03),
    ]
    if border_weights is not None:
        transforms += [
            CastToTyped(keys=[label_key, weight_key], dtype=torch.float32),
            ConcatItemsd(keys=[label_key, weight_key], name=label_key, dim=0),
            DeleteItemsd(keys=weight_key),
        ]
    return Compose(transforms)


def instances_to_classes(instances: np.ndarray | torch.Tensor, boundary_width: int = 1) -> np.ndarray:
    """Instance map -> ``0`` background, ``1`` interior, ``2`` boundary (uint8, same shape).

    The boundary is each object's own rim of ``boundary_width`` pixels (where it touches the background or
    another object), so two touching objects are separated by a boundary band of twice that width.
    """
    labels = np.asarray(instances.cpu() if isinstance(instances, torch.Tensor) else instances)
    if labels.dtype.kind == "f":
        labels = np.rint(labels)
    labels = labels.astype(np.int64, copy=False)
    classes = (labels > 0).astype(np.uint8)
    rim = find_boundaries(labels, mode="inner", background=0)
    if boundary_width > 1:
        rim = ndimage.binary_dilation(rim, iterations=boundary_width - 1) & (labels > 0)
    classes[rim] = BOUNDARY
    return classes


def classes_to_instances(
    probabilities: np.ndarray | torch.Tensor, min_size: int = 8, interior_threshold: float = 0.5
) -> np.ndarray:
    """Instance ids from ``(3, *spatial)`` class probabilities (background, interior, boundary).

    Seeds are the connected components of ``p(interior) > interior_threshold``; a watershed on ``1 - p(interior)``
    grows them over the foreground (``p(background) < 0.5``), so boundary pixels go to the nearest cell. Foreground
    components with no seed become objects of their own; objects under ``min_size`` pixels are dropped.

    Returns:
        An int32 map: 0 background, 1..N objects (numbered in raster order).
    """
    probs = np.asarray(
        probabilities.detach().float().cpu() if isinstance(probabilities, torch.Tensor) else probabilities
    )
    if probs.ndim < 3 or probs.shape[0] != 3:
        raise ValueError(f"expected (3, *spatial) probabilities (background, interior, boundary), got {probs.shape}")
    interior = probs[INTERIOR] > interior_threshold
    foreground = probs[BACKGROUND] < 0.5
    seeds, _ = ndimage.label(interior & foreground)
    seeds = _drop_small(seeds, max(1, min_size // 4))
    labels = watershed(1.0 - probs[INTERIOR], markers=seeds, mask=foreground)
    orphans, n_orphans = ndimage.label(foreground & (labels == 0))
    if n_orphans:
        labels = np.where(orphans > 0, orphans + labels.max(), labels)
    return _relabel(_drop_small(labels, min_size))


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    if min_size <= 1 or not labels.any():
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    return np.where(small[labels], 0, labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.int32)
    lookup[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lookup[labels]


def _like(value: Any, array: np.ndarray) -> Any:
    out = torch.as_tensor(array)
    if isinstance(value, MetaTensor):
        return MetaTensor(out, meta=value.meta, applied_operations=value.applied_operations)
    return out


class InstancesToClassesd(MapTransform):
    """Instance maps ``(1, *spatial)`` -> background / interior / boundary classes (see :func:`instances_to_classes`).

    Example::

        InstancesToClassesd(keys="label")({"label": MetaTensor(instance_map[None])})
    """

    def __init__(self, keys: KeysCollection, boundary_width: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.boundary_width = boundary_width

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            array = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)
            classes = np.stack([instances_to_classes(c, self.boundary_width) for c in array])
            d[key] = _like(value, classes)
        return d


class ClassesToInstancesd(MapTransform):
    """Class probabilities ``(3, *spatial)`` -> an instance map ``(1, *spatial)`` (see :func:`classes_to_instances`)."""

    def __init__(
        self, keys: KeysCollection, min_size: int = 8, interior_threshold: float = 0.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.min_size = min_size
        self.interior_threshold = interior_threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            instances = classes_to_instances(value, self.min_size, self.interior_threshold)
            d[key] = _like(value, instances[None])
        return d
