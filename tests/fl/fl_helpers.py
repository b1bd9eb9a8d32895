"""Shared constants for the federated-learning tests (imported by ``conftest.py`` and the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unet_med.networks import UNet

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"

#: Overrides for a seconds-long round: 4 small demo cases per site, a 4-32 feature net, 16^3 patches, the CPU.
TINY: dict[str, Any] = {
    "demo": {"num_cases": 4, "shape": [32, 32, 32], "spacing": [1.2, 1.2, 2.5]},
    "features": [4, 8, 16, 32],
    "patch_size": [16, 16, 16],
    "batch_size": 2,
    "num_samples": 1,
    "device": "cpu",
}


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """The network ``TINY`` makes of the reference bundle's ``network_def``."""
    torch.manual_seed(seed)
    return UNet(
        spatial_dims=3, in_channels=1, out_channels=3, features=TINY["features"], norm=["instance", {"affine": True}]
    )
