"""The DICOM node (``unet-med serve``): series in from a scanner or PACS, segmentations back, unattended.

- :mod:`~unet_med.serve.queue`: the durable queue (SQLite, write-ahead log), one state machine per series.
- :mod:`~unet_med.serve.scp`: the Storage SCP (pynetdicom); stores and records instances, nothing else.
- :mod:`~unet_med.serve.watcher`: a series is complete after a quiet period; routed by the rules.
- :mod:`~unet_med.serve.rules`: routing rules as data (modality, body part, series description -> bundle).
- :mod:`~unet_med.serve.worker`: the loaded bundles segment complete series, oldest first.
- :mod:`~unet_med.serve.sender`: C-STORE of results to the destination, retried with backoff.
- :mod:`~unet_med.serve.node`: all of them together.

pynetdicom is imported when the node starts.
"""

from __future__ import annotations

from unet_med.serve.queue import STATES, Job, JobQueue, series_key
from unet_med.serve.rules import Rule, default_rules, load_rules, route
from unet_med.serve.sender import DeliveryError, Destination, Sender, send_file

__all__ = [
    "STATES",
    "DeliveryError",
    "Destination",
    "Job",
    "JobQueue",
    "Rule",
    "Sender",
    "default_rules",
    "load_rules",
    "route",
    "send_file",
    "series_key",
]
