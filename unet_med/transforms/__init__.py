"""Transform presets: deterministic preprocessing per modality and training augmentation."""

from __future__ import annotations

from unet_med.transforms.intensity import ZScoreForegroundd, zscore_foreground
from unet_med.transforms.presets import inference_postprocessing, preprocessing, train_augmentation

__all__ = [
    "ZScoreForegroundd",
    "inference_postprocessing",
    "preprocessing",
    "train_augmentation",
    "zscore_foreground",
]
