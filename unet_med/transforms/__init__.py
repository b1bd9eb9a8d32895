"""Transform presets: deterministic preprocessing per modality and training augmentation."""

from __future__ import annotations

from unet_med.transforms.border_weights import BorderWeightd, border_weight_map
from unet_med.transforms.intensity import ZScoreForegroundd, zscore_foreground
from unet_med.transforms.microscopy import (
    ClassesToInstancesd,
    InstancesToClassesd,
    classes_to_instances,
    instances_to_classes,
    microscopy_augmentation,
)
from unet_med.transforms.presets import (
    inference_postprocessing,
    load_like_preprocessing,
    preprocessing,
    strong_augmentation,
    train_augmentation,
)
from unet_med.transforms.regions import BRATS_REGIONS, LabelToRegionsd, label_to_regions

__all__ = [
    "BRATS_REGIONS",
    "BorderWeightd",
    "ClassesToInstancesd",
    "InstancesToClassesd",
    "LabelToRegionsd",
    "ZScoreForegroundd",
    "border_weight_map",
    "classes_to_instances",
    "inference_postprocessing",
    "instances_to_classes",
    "label_to_regions",
    "load_like_preprocessing",
    "microscopy_augmentation",
    "preprocessing",
    "strong_augmentation",
    "train_augmentation",
    "zscore_foreground",
]
