"""Label maps to overlapping regions, e.g. the BraTS whole tumour, tumour core and enhancing tumour."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["BRATS_REGIONS", "LabelToRegionsd", "label_to_regions"]

#: BraTS regions for labels 1 necrosis, 2 edema, 3 non-enhancing tumour, 4 enhancing tumour:
#: whole tumour (all), tumour core (all but edema), enhancing tumour.
BRATS_REGIONS = ((1, 2, 3, 4), (1, 3, 4), (4,))


def label_to_regions(label: torch.Tensor, regions: Sequence[Sequence[int]]) -> torch.Tensor:
    """Turns a label map ``(1, *spatial)`` into one binary channel per region ``(R, *spatial)`` (float32).

    Example::

        label_to_regions(label, BRATS_REGIONS)  # channels: whole tumour, tumour core, enhancing tumour
    """
    if label.shape[0] != 1:
        raise ValueError(f"expected a label map with one channel, got shape {tuple(label.shape)}")
    channels = [torch.isin(label[0], torch.as_tensor(list(r), device=label.device)) for r in regions]
    return torch.stack(channels).float()


class LabelToRegionsd(MapTransform):
    """Dictionary version of :func:`label_to_regions`; metadata is kept."""

    def __init__(
        self, keys: KeysCollection, regions: Sequence[Sequence[int]] = BRATS_REGIONS, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.regions = [tuple(int(v) for v in r) for r in regions]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            regions = label_to_regions(torch.as_tensor(label), self.regions)
            d[key] = MetaTensor(regions, meta=label.meta) if isinstance(label, MetaTensor) else regions
        return d
