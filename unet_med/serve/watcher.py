"""Deciding that a series is complete, and routing it.

DICOM has no end-of-series message: a series is complete when no instance of it arrived for ``complete_after``
seconds (MONAI's Informatics Gateway waits 5 s, Orthanc's StableAge 60 s). The watcher then reads one stored
instance's header (no pixel data) and routes the series by the rules (:mod:`unet_med.serve.rules`):
``complete`` with its bundle, or ``ignored`` with the reason when no rule matches or nothing readable arrived.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from unet_med.serve.queue import JobQueue
from unet_med.serve.rules import Rule, route

__all__ = ["CompletionWatcher", "series_header"]

logger = logging.getLogger(__name__)

_ROUTING_KEYS = ("Modality", "BodyPartExamined", "SeriesDescription")


def series_header(folder: str | os.PathLike) -> dict[str, str] | None:
    """The routing attributes of the first readable instance in ``folder``, or ``None``."""
    import pydicom

    for path in sorted(Path(folder).glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_ROUTING_KEYS))
        except Exception:  # a damaged file: try the next one
            continue
        return {k: str(ds.get(k, "")) for k in _ROUTING_KEYS}
    return None


class CompletionWatcher:
    """Moves quiet series from ``received`` to ``complete`` (routed) or ``ignored``.

    Args:
        queue: the node's queue.
        workdir: the node's folder.
        rules: the routing rules, first match wins.
        complete_after: seconds without a new instance before a series is complete.
    """

    def __init__(self, queue: JobQueue, workdir: str | os.PathLike, rules: list[Rule], complete_after: float) -> None:
        self.queue = queue
        self.workdir = Path(workdir)
        self.rules = rules
        self.complete_after = float(complete_after)

    def check(self) -> int:
        """One pass; returns how many series were closed."""
        closed = 0
        for job in self.queue.quiet_series(self.complete_after):
            header = series_header(self.workdir / "incoming" / job.key)
            reason: str | None
            if header is None:
                bundle, reason = None, "no readable instance"
            else:
                bundle = route(self.rules, header)
                reason = None if bundle else f"no routing rule matches modality {header['Modality'] or '(none)'}"
            if self.queue.mark_complete(job.series_uid, bundle, reason, last=job.last_instance):
                closed += 1
                if bundle:
                    logger.info("series %s: complete (%d instances), routed to %s", job.key, job.instances, bundle)
                else:
                    logger.info("series %s: ignored (%s); its instances are kept", job.key, reason)
        return closed
