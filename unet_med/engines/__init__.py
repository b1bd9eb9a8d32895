"""Ignite handlers and metrics for MONAI engines."""

from __future__ import annotations

from unet_med.engines.case_metrics import METRIC_NAMES, CaseMetricsReport, case_metrics, summarize_case_metrics
from unet_med.engines.checkpoint import (
    BestModelSaver,
    CheckpointMissingError,
    FinalModelSaver,
    ResumableCheckpoint,
    halve_weights,
    load_network,
    load_state_dict,
)
from unet_med.engines.compiled import CompiledInferer
from unet_med.engines.figures import save_overlay_figure
from unet_med.engines.microscopy_report import MicroscopyReport, instance_metrics, membrane_metrics
from unet_med.engines.overlay import OverlayImageHandler, overlay_slice
from unet_med.engines.provenance import CheckpointMismatchError

__all__ = [
    "METRIC_NAMES",
    "BestModelSaver",
    "CaseMetricsReport",
    "CheckpointMismatchError",
    "CheckpointMissingError",
    "CompiledInferer",
    "FinalModelSaver",
    "MicroscopyReport",
    "OverlayImageHandler",
    "ResumableCheckpoint",
    "case_metrics",
    "halve_weights",
    "instance_metrics",
    "load_network",
    "load_state_dict",
    "membrane_metrics",
    "overlay_slice",
    "save_overlay_figure",
    "summarize_case_metrics",
]
