"""Federated learning of a bundle across sites with NVIDIA FLARE and MONAI's FL integration.

:func:`write_job` writes a FLARE job (FedAvg; ``monai_nvflare.ClientAlgoExecutor`` driving
``monai.fl.client.MonaiAlgo`` over the bundle at each site), :func:`simulate` runs it in FLARE's simulator, and
:func:`export_global_model` turns the global model back into a bundle. Writing a job and exporting need only
``unet_med``; running one needs the ``fl`` extra (``pip install -e '.[fl]'`` in the clone), and the FLARE
components here (:mod:`unet_med.fl.persistor`, :mod:`unet_med.fl.quorum`, :mod:`unet_med.fl.filters`,
:mod:`unet_med.fl.stats`) import it when loaded.
See ``docs/federated.md``.
"""

from __future__ import annotations

from unet_med.fl.deps import FL_EXTRA_HINT, have_nvflare, require_nvflare
from unet_med.fl.export import export_global_model, find_global_model
from unet_med.fl.job import DATALIST_ENV, DATASET_ENV, write_job
from unet_med.fl.simulate import SimulationResult, simulate

__all__ = [
    "DATALIST_ENV",
    "DATASET_ENV",
    "FL_EXTRA_HINT",
    "SimulationResult",
    "export_global_model",
    "find_global_model",
    "have_nvflare",
    "require_nvflare",
    "simulate",
    "write_job",
]
