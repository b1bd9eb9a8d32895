"""The U-Net paper's weight map: extra weight on the thin borders that separate touching objects.

Ronneberger et al. (2015) weighted the cross-entropy of each pixel by

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)),

where ``d1`` and ``d2`` are the distances to the nearest and the second nearest object, so that the network has
to learn the narrow separations between touching cells (w0 = 10, sigma = 5 pixels in the paper). Here the
objects are the connected components of every class but ``border_class`` (the membranes of an EM section), the
border term is put on the pixels of ``border_class`` (the separations themselves), and ``w_c`` is 1.

In EM nearly every membrane pixel lies within a few sigma of two cells, so the paper's map weighs the membrane
class as a whole about 5x (ISBI 2012 sections), which moves the decision towards membrane. With
``keep_class_total`` the border pixels' weights are scaled to average 1 in each image: the classes keep the
weight plain cross-entropy gives them, and only the share within the border class moves to the narrow
separations.

Example::

    weights = border_weight_map(label, border_class=1)  # (H, W) float32, >= 1
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

__all__ = ["BorderWeightd", "border_weight_map"]


def border_weight_map(
    label: np.ndarray | torch.Tensor,
    border_class: int,
    w0: float = 10.0,
    sigma: float = 5.0,
    keep_class_total: bool = False,
) -> np.ndarray:
    """Per-pixel loss weights of the U-Net paper for a class map (any spatial dims; a leading channel of 1 is dropped).

    Args:
        label: class map ``(*spatial)`` or ``(1, *spatial)``.
        border_class: the class that separates the objects (its pixels get the border term).
        w0: weight of the border term at a separation of zero width.
        sigma: its fall-off, in pixels.
        keep_class_total: scale the border class's weights to a mean of 1 (see the module's note).

    Returns:
        ``float32`` weights of the label's spatial shape: 1 everywhere, plus the border term on ``border_class``
        (then scaled to a mean of 1 there with ``keep_class_total``).
    """
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"border_weight_map needs w0 >= 0 and sigma > 0, got w0={w0}, sigma={sigma}")
    lab = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
    if lab.ndim > 1 and lab.shape[0] == 1:
        lab = lab[0]
    lab = np.rint(lab).astype(np.int64) if lab.dtype.kind == "f" else lab
    weights = np.ones(lab.shape, dtype=np.float32)
    border = lab == border_class
    objects, count = ndimage.label(~border)
    if count < 2 or not border.any() or w0 == 0:
        return weights
    # beyond 4 sigma from an object the term is below w0 * exp(-8): distances are computed within that reach
    reach = math.ceil(4 * sigma)
    d1 = np.full(lab.shape, np.inf, dtype=np.float32)
    d2 = np.full(lab.shape, np.inf, dtype=np.float32)
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        window = tuple(slice(max(s.start - reach, 0), min(s.stop + reach, n)) for s, n in zip(box, lab.shape))
        dist = ndimage.distance_transform_edt(objects[window] != index).astype(np.float32)
        near, second = d1[window], d2[window]
        second[...] = np.where(dist < near, near, np.minimum(second, dist))
        near[...] = np.minimum(near, dist)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    weights[border] += term[border]
    if keep_class_total:
        weights[border] /= weights[border].mean()
    return weights


class BorderWeightd(MapTransform):
    """Adds :func:`border_weight_map` of ``keys``' class map as ``weight_key`` (same meta data, channel first).

    Deterministic: placed before the random crops it is computed once per image by a ``CacheDataset``, and the
    spatial augmentations then move it with the image (see :func:`unet_med.transforms.microscopy_augmentation`).
    """

    def __init__(
        self,
        keys: KeysCollection,
        border_class: int,
        weight_key: str = "weight",
        w0: float = 10.0,
        sigma: float = 5.0,
        keep_class_total: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"BorderWeightd weighs one class map, got keys {list(self.keys)}")
        self.border_class, self.weight_key, self.w0, self.sigma = int(border_class), weight_key, w0, sigma
        self.keep_class_total = keep_class_total

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            weights = torch.from_numpy(
                border_weight_map(label, self.border_class, self.w0, self.sigma, self.keep_class_total)
            )[None]
            if isinstance(label, MetaTensor):
                weights = MetaTensor(weights, meta=dict(label.meta))
            d[self.weight_key] = weights
        return d
