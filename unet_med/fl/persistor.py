"""The server's model persistor: the bundle's ``network_def`` (with the job's overrides), started from the bundle's
weights when the job says so.

MONAI's :class:`monai_nvflare.MonaiBundlePersistor` reads ``configs/train.json`` as it is; a job that changes the
network through overrides (a smaller ``features`` for a test, say) needs the server to build the same network as
the sites, so this persistor applies the same overrides before it builds ``network_def``. Weights are loaded with
``weights_only=True``: the bundle travels with the job, and unpickling it must not run code.
"""

from __future__ import annotations

from typing import Any

from unet_med.fl.deps import FL_EXTRA_HINT

try:
    from monai_nvflare.monai_bundle_persistor import MonaiBundlePersistor
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"{e}; {FL_EXTRA_HINT}") from e

__all__ = ["BundlePersistor"]


class BundlePersistor(MonaiBundlePersistor):
    """Persists the global model of a bundle job on the FLARE server.

    Args:
        bundle_root: the bundle folder, relative to the server's app folder (``config/bundle`` in a job written by
            :func:`unet_med.fl.write_job`).
        config_train_filename: the config defining ``network_def``, relative to ``bundle_root``.
        overrides: config overrides applied before ``network_def`` is built; the sites get the same ones.
        source_ckpt_filename: initial weights relative to ``bundle_root`` (a plain state dict or a checkpoint with a
            ``"model"`` entry); ``None`` starts from the network's random initialisation.
        exclude_vars: regex of weights the server keeps out of the global model file (FLARE's meaning).

    Example (``config_fed_server.json``)::

        {"id": "persistor", "path": "unet_med.fl.persistor.BundlePersistor",
         "args": {"bundle_root": "config/bundle", "source_ckpt_filename": "models/model.pt"}}
    """

    def __init__(
        self,
        bundle_root: str,
        config_train_filename: str = "configs/train.json",
        overrides: dict[str, Any] | None = None,
        source_ckpt_filename: str | None = None,
        exclude_vars: str | None = None,
    ) -> None:
        super().__init__(
            bundle_root=bundle_root,
            config_train_filename=config_train_filename,
            exclude_vars=exclude_vars,
            source_ckpt_filename=source_ckpt_filename,
        )
        self.overrides = dict(overrides or {})
        self.load_weights_only = True

    def _parse_config(self, fl_ctx: Any) -> None:
        super()._parse_config(fl_ctx)
        if self.overrides:
            self.train_parser.update(self.overrides)
