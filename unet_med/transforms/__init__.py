"""Transform presets: deterministic preprocessing per modality and training augmentation."""

from __future__ import annotations

from unet_med.transforms.intensity import ZScoreForegroundd, zscore_foreground
from unet_med.transforms.presets import inference_postprocessing, preprocessing, train_augmentation
from unet_med.transforms.regions import BRATS_REGIONS, LabelToRegionsd, label_to_regions

__all__ = [
    "BRATS_REGIONS",
    "LabelToRegionsd",
    "ZScoreForegroundd",
    "inference_postprocessing",
    "label_to_regions",
    "preprocessing",
    "train_augmentation",
    "zscore_foreground",
]
