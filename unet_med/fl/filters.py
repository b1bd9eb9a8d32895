"""A Gaussian-noise privacy filter for the updates a site sends, which FLARE 2.7 does not ship.

FLARE ships ``ExcludeVars``, ``PercentilePrivacy`` and ``SVTPrivacy`` (used as they are by
:func:`unet_med.fl.write_job`); this adds the Gaussian mechanism of DP-FedAvg (McMahan et al., "Learning
Differentially Private Recurrent Language Models", ICLR 2018): the whole update is clipped to an L2 norm of at most
``clip`` and every value gets independent noise of standard deviation ``sigma * clip``. It applies to weight
differences only (clipping full weights has no meaning). The privacy budget this spends depends on ``sigma``, the
number of rounds and the sites' sampling; this filter does no accounting.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unet_med.fl.deps import FL_EXTRA_HINT

try:
    from nvflare.apis.dxo import DataKind
    from nvflare.apis.dxo_filter import DXOFilter
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"{e}; {FL_EXTRA_HINT}") from e

__all__ = ["GaussianNoise", "clip_and_noise"]


def clip_and_noise(
    update: dict[str, np.ndarray], sigma: float, clip: float, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], float]:
    """Clips ``update`` (name -> array) to a global L2 norm of ``clip`` and adds N(0, (sigma * clip)^2) noise.

    Returns:
        The noisy update (same names, shapes and dtypes) and the update's L2 norm before clipping.
    """
    norm = math.sqrt(sum(float(np.sum(np.square(np.asarray(v, dtype=np.float64)))) for v in update.values()))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    noisy = {}
    for name, value in update.items():
        value = np.asarray(value)
        noise = rng.normal(0.0, sigma * clip, size=value.shape)
        noisy[name] = (value * scale + noise).astype(value.dtype, copy=False)
    return noisy, norm


class GaussianNoise(DXOFilter):
    """Clips a site's weight update and adds Gaussian noise before it leaves the site.

    Args:
        sigma: noise multiplier; the noise standard deviation is ``sigma * clip``.
        clip: the L2 norm the whole update is clipped to.
        seed: seed of the noise (``None``: fresh entropy each run; set it only for tests).

    Raises:
        ValueError: ``sigma`` is negative or ``clip`` is not positive.

    Example (``config_fed_client.json``)::

        "task_result_filters": [{"tasks": ["train"], "filters": [
            {"path": "unet_med.fl.filters.GaussianNoise", "args": {"sigma": 0.5, "clip": 1.0}}]}]
    """

    def __init__(self, sigma: float = 1.0, clip: float = 1.0, seed: int | None = None) -> None:
        super().__init__(supported_data_kinds=[DataKind.WEIGHT_DIFF], data_kinds_to_filter=[DataKind.WEIGHT_DIFF])
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.sigma = float(sigma)
        self.clip = float(clip)
        self.rng = np.random.default_rng(seed)

    def process_dxo(self, dxo: Any, shareable: Any, fl_ctx: Any) -> Any:
        dxo.data, norm = clip_and_noise(dxo.data, self.sigma, self.clip, self.rng)
        self.log_info(fl_ctx, f"update norm {norm:.4g} clipped to {self.clip:g}, noise std {self.sigma * self.clip:g}")
        return dxo
