"""Inference: bundle loading, sliding-window prediction with TTA, and writers that keep the input's geometry."""

from __future__ import annotations

from unet_med.inference.autocast import AutocastInferer
from unet_med.inference.bundle_model import BundleError, BundleModel, load_bundle
from unet_med.inference.cases import find_cases
from unet_med.inference.ensemble import FoldEnsemble, load_ensemble
from unet_med.inference.inferer import ScanInferer
from unet_med.inference.postprocess import InvertToInputd, SaveImageLikeInputd, ScoresToLabelsd, argmax_uint8
from unet_med.inference.predictor import CaseResult, InputError, Predictor
from unet_med.inference.resample import resample_to_grid
from unet_med.inference.tta import MirrorTTA, mirrored
from unet_med.inference.writers import AtomicNibabelWriter, AtomicPILWriter

__all__ = [
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "AutocastInferer",
    "BundleError",
    "BundleModel",
    "CaseResult",
    "FoldEnsemble",
    "InputError",
    "InvertToInputd",
    "MirrorTTA",
    "Predictor",
    "SaveImageLikeInputd",
    "ScanInferer",
    "ScoresToLabelsd",
    "argmax_uint8",
    "find_cases",
    "load_bundle",
    "load_ensemble",
    "mirrored",
    "resample_to_grid",
]
