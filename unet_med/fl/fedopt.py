"""FedOpt on the server: the averaged site update applied by a server optimizer (FedAvgM with SGD + momentum).

FLARE's :class:`~nvflare.app_opt.pt.fedopt.PTFedOptModelShareableGenerator` treats the weighted mean of the sites'
weight differences as a (negative) gradient of the global model and steps a torch optimizer with it (Reddi et al.,
"Adaptive federated optimization", 2020). It needs the global model as a ``torch.nn.Module`` component; in a bundle
job that module is the one :class:`~unet_med.fl.persistor.BundlePersistor` builds from the bundle's
``network_def`` (with the job's overrides), so :class:`BundleFedOpt` takes it from the persistor when the run starts
instead of from a separate model component that would have to repeat the network's definition.

Before each server step the module is set to the current global model: the persistor builds it with a random
initialisation and hands out the bundle's ``models/model.pt`` as the first global model without loading it into the
module, so FLARE's generator alone would step a model the sites never saw (tested: with ``lr`` 1 and no momentum
this generator gives FedAvg's global model).

Example (``config_fed_server.json``)::

    {"id": "shareable_generator", "path": "unet_med.fl.fedopt.BundleFedOpt",
     "args": {"persistor_id": "persistor", "lr": 1.0, "momentum": 0.6}}

The server optimizer is given by its numbers, not as a nested component: FLARE builds every ``{"path": ...}`` (or
``class_path``) dict while it reads the config, before the model the optimizer needs exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unet_med.fl.deps import FL_EXTRA_HINT

try:
    from nvflare.apis.event_type import EventType
    from nvflare.app_common.abstract.model import ModelLearnableKey
    from nvflare.app_common.app_constant import AppConstants
    from nvflare.app_opt.pt.fedopt import PTFedOptModelShareableGenerator
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"{e}; {FL_EXTRA_HINT}") from e

__all__ = ["BundleFedOpt"]


class BundleFedOpt(PTFedOptModelShareableGenerator):
    """FLARE's FedOpt shareable generator on the global model held by the bundle persistor.

    Args:
        persistor_id: the component id of the :class:`~unet_med.fl.persistor.BundlePersistor` (listed before
            this component, so its model exists when the run starts).
        lr: the server SGD step size (1.0 without momentum is FedAvg).
        momentum: the server SGD momentum (FedAvgM), in [0, 1).
        device: where the server update runs (``"cpu"`` by default: one addition per weight per round).
    """

    def __init__(
        self,
        persistor_id: str = "persistor",
        lr: float = 1.0,
        momentum: float = 0.0,
        device: str = "cpu",
    ) -> None:
        if not (lr > 0 and 0 <= momentum < 1):
            raise ValueError(f"server lr must be > 0 and momentum in [0, 1), got {lr}, {momentum}")
        sgd = {"path": "torch.optim.SGD", "args": {"lr": float(lr), "momentum": float(momentum)}}
        super().__init__(optimizer_args=sgd, source_model=persistor_id, device=device)
        self.persistor_id = persistor_id

    def handle_event(self, event_type: str, fl_ctx: Any) -> None:
        if event_type == EventType.START_RUN:
            persistor = fl_ctx.get_engine().get_component(self.persistor_id)
            self.source_model = getattr(persistor, "model", None)  # FLARE's check names a missing model
        super().handle_event(event_type, fl_ctx)

    def shareable_to_learnable(self, shareable: Any, fl_ctx: Any) -> Any:
        base = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
        if base and self.model is not None:
            weights = base[ModelLearnableKey.WEIGHTS]
            with torch.no_grad():
                for name, tensor in self.model.state_dict().items():
                    if name in weights:
                        value = torch.as_tensor(np.array(weights[name], copy=True))
                        tensor.copy_(value.reshape(tensor.shape).to(tensor.dtype))
        return super().shareable_to_learnable(shareable, fl_ctx)
