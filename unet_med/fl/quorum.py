"""Who contributed to each round, and a stop when fewer than ``min_clients`` sites did.

FLARE's ScatterAndGather waits for ``min_clients`` answers, then for ``wait_time_after_min_received`` seconds, or
until its ``train_timeout``; when the timeout passes it aggregates whatever came in, however few. This component
makes the count a rule: before each aggregation it logs which sites sent an update and which did not, and stops the
job (``system_panic``) when fewer than ``min_clients`` did, so a round is never averaged over fewer sites than the
federation agreed on. The last complete round's global model stays on the server.
"""

from __future__ import annotations

from typing import Any

from unet_med.fl.deps import FL_EXTRA_HINT

try:
    from nvflare.apis.fl_component import FLComponent
    from nvflare.apis.fl_constant import ReservedKey
    from nvflare.app_common.app_constant import AppConstants
    from nvflare.app_common.app_event_type import AppEventType
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"{e}; {FL_EXTRA_HINT}") from e

__all__ = ["RoundQuorum"]


class RoundQuorum(FLComponent):
    """Server component that reports each round's contributors and enforces ``min_clients``.

    Args:
        min_clients: the fewest sites whose update a round may be aggregated from (at least 1).

    Raises:
        ValueError: ``min_clients`` is below 1.

    Example (``config_fed_server.json``)::

        {"id": "quorum", "path": "unet_med.fl.quorum.RoundQuorum", "args": {"min_clients": 2}}
    """

    def __init__(self, min_clients: int) -> None:
        super().__init__()
        if int(min_clients) < 1:
            raise ValueError(f"min_clients must be at least 1, got {min_clients}")
        self.min_clients = int(min_clients)
        self._contributors: list[str] = []

    def handle_event(self, event_type: str, fl_ctx: Any) -> None:
        if event_type == AppEventType.ROUND_STARTED:
            self._contributors = []
        elif event_type == AppEventType.AFTER_CONTRIBUTION_ACCEPT:
            if fl_ctx.get_prop(AppConstants.AGGREGATION_ACCEPTED):
                result = fl_ctx.get_prop(AppConstants.TRAINING_RESULT)
                name = result.get_peer_prop(ReservedKey.IDENTITY_NAME, None) if result is not None else None
                self._contributors.append(str(name))
        elif event_type == AppEventType.BEFORE_AGGREGATION:
            self._check(fl_ctx)

    def _check(self, fl_ctx: Any) -> None:
        current_round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        clients = sorted(client.name for client in fl_ctx.get_engine().get_clients())
        contributors = sorted(self._contributors)
        missing = [name for name in clients if name not in contributors]
        message = (
            f"round {current_round}: {len(contributors)} of {len(clients)} site(s) contributed"
            f" ({', '.join(contributors) or 'none'})"
        )
        if missing:
            message += f"; no update from {', '.join(missing)}"
        if len(contributors) < self.min_clients:
            self.log_error(fl_ctx, f"{message}; min_clients={self.min_clients}: stopping the job")
            self.system_panic(f"{message}; fewer than min_clients={self.min_clients}", fl_ctx)
        elif missing:
            self.log_warning(fl_ctx, message)
        else:
            self.log_info(fl_ctx, message)
