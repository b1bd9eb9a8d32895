"""MONAI's FLARE stats sender (``monai_nvflare.nvflare_stats_handler.NVFlareStatsHandler``), importable on MONAI 1.6.

monai-nvflare 0.4.0 (the newest release) imports ``IgniteInfo`` from ``monai.config``; MONAI 1.6 moved it to
``monai.utils``, so the module fails to import. This module puts the name back where monai-nvflare looks, then
re-exports MONAI's class unchanged. Drop it, and point the client config back at ``monai_nvflare``, once a
monai-nvflare release imports it from ``monai.utils``.
"""

from __future__ import annotations

import monai.config
import monai.utils

from unet_med.fl.deps import FL_EXTRA_HINT

if not hasattr(monai.config, "IgniteInfo"):
    monai.config.IgniteInfo = monai.utils.IgniteInfo  # type: ignore[attr-defined]

try:
    from monai_nvflare.nvflare_stats_handler import NVFlareStatsHandler
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"{e}; {FL_EXTRA_HINT}") from e

__all__ = ["NVFlareStatsHandler"]
