"""The DICOM node: a Storage SCP, the completion watcher, the worker and the sender around one durable queue.

Threads: pynetdicom's (one per association) store instances; one thread closes quiet series and delivers ready
results; the calling thread runs the worker (the models stay loaded there). On start the queue is recovered:
series left ``running`` by a killed node go back to ``complete``, ``ready`` results are sent again with their
recorded SOP Instance UID.

Example::

    node = Node("work/", {"sarcoma_ct": "bundles/sarcoma_ct"}, Destination.parse("ORTHANC@127.0.0.1:4242"))
    node.serve_forever()   # until SIGTERM / SIGINT
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unet_med.serve.queue import JobQueue
from unet_med.serve.rules import Rule, default_rules, load_rules
from unet_med.serve.scp import StorageSCP
from unet_med.serve.sender import Destination, Sender
from unet_med.serve.watcher import CompletionWatcher
from unet_med.serve.worker import Worker

__all__ = ["Node", "queue_path"]

logger = logging.getLogger(__name__)


def queue_path(workdir: str | os.PathLike) -> Path:
    """The queue's SQLite file in a workdir."""
    return Path(workdir) / "queue.sqlite"


class Node:
    """Everything ``unet-med serve`` runs.

    Args:
        workdir: the node's folder (queue, received instances, results).
        bundles: bundle name -> folder.
        destination: where results are sent.
        ae_title, port: the node's AE title and port.
        output_format: ``dicom-seg`` or ``rtstruct``.
        complete_after: seconds without a new instance before a series is complete.
        rules_file: routing rules (JSON); default one rule per bundle from its task modality.
        allow_ae, allow_hosts: calling AE titles and peer addresses accepted (all when empty).
        reserve_bytes: free disk space below which instances are refused (``0xA700``).
        keep: keep instances and results after delivery.
        poll: seconds between passes of the watcher, sender and an idle worker.
        listen_tls, send_tls: ``ssl.SSLContext``s for DICOM TLS in and out (:mod:`unet_med.serve.tls`).
        predictor_args: keyword arguments for the predictors (device, precision, ...).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        bundles: Mapping[str, str | os.PathLike],
        destination: Destination,
        ae_title: str = "UNETMED",
        port: int = 11112,
        output_format: str = "dicom-seg",
        complete_after: float = 10.0,
        rules_file: str | os.PathLike | None = None,
        allow_ae: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        reserve_bytes: int = 1 << 30,
        keep: bool = False,
        poll: float = 0.2,
        listen_tls: Any = None,
        send_tls: Any = None,
        **predictor_args: Any,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.queue = JobQueue(queue_path(self.workdir))
        self.worker = Worker(self.queue, self.workdir, bundles, output_format, **predictor_args)
        self.rules: list[Rule] = (
            load_rules(rules_file, self.worker.models) if rules_file else default_rules(self.worker.models)
        )
        if not self.rules:
            logger.warning("no routing rule: every series will be stored and ignored")
        self.watcher = CompletionWatcher(self.queue, self.workdir, self.rules, complete_after)
        self.sender = Sender(self.queue, destination, ae_title, self.workdir, keep=keep, tls=send_tls)
        self.scp = StorageSCP(
            self.workdir, self.queue, ae_title, port, allow_ae=allow_ae, allow_hosts=allow_hosts,
            reserve_bytes=reserve_bytes, ssl_context=listen_tls,
        )  # fmt: skip
        self.poll = poll
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Recovers the queue, starts listening and the watcher/sender thread."""
        recovered = self.queue.recover()
        if recovered:
            logger.warning("%d series were running when the node stopped; they run again", recovered)
        self.scp.start()
        self._thread = threading.Thread(target=self._background, name="watch-send", daemon=True)
        self._thread.start()

    def _background(self) -> None:
        while not self.stopping.is_set():
            try:
                self.watcher.check()
                self.sender.send_due()
            except Exception:  # keep serving; the reason is in the log
                logger.exception("watcher/sender pass failed")
            self.stopping.wait(self.poll)

    def serve_forever(self) -> None:
        """Starts, then runs the worker until :meth:`stop` (or SIGTERM / SIGINT through the CLI)."""
        self.start()
        try:
            while not self.stopping.is_set():
                if self.worker.run_one() is None:
                    self.stopping.wait(self.poll)
        finally:
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.scp.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
