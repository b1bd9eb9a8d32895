"""Transform presets: deterministic preprocessing per modality and training augmentation."""

from __future__ import annotations

from unet_med.transforms.presets import inference_postprocessing, preprocessing, train_augmentation

__all__ = ["inference_postprocessing", "preprocessing", "train_augmentation"]
