"""The node's DICOM Storage SCP (pynetdicom): receives instances, stores each one atomically, records it, answers.

The C-STORE handler does only that, in milliseconds (senders time out: Orthanc after 10 s): it writes the
instance as received (``event.encoded_dataset()``) to ``<workdir>/incoming/<series key>/<SOP Instance UID>.dcm``
through a temp file, fsync and rename, records it in the queue, and answers ``0x0000``. Segmentation runs in the
worker, never in the association. It answers

- ``0xA700`` (out of resources) when the disk holding the workdir has less than ``reserve_bytes`` free;
- ``0x0124`` (not authorised) to a peer whose address is not in ``allow_hosts``;
- ``0xC210`` (cannot understand) for an instance without a Series or SOP Instance UID.

Calling AE titles outside ``allow_ae`` are rejected when the association is requested (pynetdicom's
``require_calling_aet``). Logs name series by their hashed key only, never a UID or a patient attribute.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unet_med.serve.queue import JobQueue, series_key

__all__ = ["STATUS_NOT_AUTHORISED", "STATUS_OUT_OF_RESOURCES", "StorageSCP", "instance_path"]

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_NOT_AUTHORISED = 0x0124
STATUS_CANNOT_UNDERSTAND = 0xC210
_UID = re.compile(r"^[0-9.]{1,64}$")


def instance_path(workdir: Path, series_uid: str, sop_uid: str) -> Path:
    """Where an instance is stored: ``incoming/<series key>/<SOP Instance UID>.dcm``."""
    return Path(workdir) / "incoming" / series_key(series_uid) / f"{sop_uid}.dcm"


class StorageSCP:
    """A Storage SCP storing into ``workdir`` and recording into ``queue``.

    Args:
        workdir: the node's folder.
        queue: the node's :class:`JobQueue`.
        ae_title: the node's AE title.
        port: the port to listen on; ``host`` the address (default all).
        allow_ae: calling AE titles accepted (all when empty).
        allow_hosts: peer addresses accepted (all when empty).
        reserve_bytes: free disk space below which instances are refused with ``0xA700``.
        ssl_context: DICOM TLS (:func:`unet_med.serve.tls.server_context`); plain TCP when ``None``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        queue: JobQueue,
        ae_title: str = "UNETMED",
        port: int = 11112,
        host: str = "",
        allow_ae: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        reserve_bytes: int = 1 << 30,
        ssl_context: Any = None,
    ) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        self.workdir = Path(workdir)
        self.queue = queue
        self.allow_hosts = set(allow_hosts)
        self.reserve_bytes = int(reserve_bytes)
        self.ae = AE(ae_title=ae_title)
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(Verification)
        self.ae.maximum_pdu_size = 0
        if allow_ae:
            self.ae.require_calling_aet = list(allow_ae)
        self.address = (host, int(port))
        self._handlers: list[Any] = [(evt.EVT_C_STORE, self.handle_store)]
        self._server: Any = None
        self.ssl_context = ssl_context
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listens in pynetdicom's threads (returns at once)."""
        self._server = self.ae.start_server(
            self.address, block=False, evt_handlers=self._handlers, ssl_context=self.ssl_context
        )
        logger.info("listening as %s on port %d", self.ae.ae_title, self.address[1])

    def stop(self) -> None:
        """Stops listening (once, whichever thread asks first)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    def handle_store(self, event: Any) -> int:
        """The C-STORE handler: store, record, answer."""
        peer = event.assoc.requestor.address
        if self.allow_hosts and peer not in self.allow_hosts:
            logger.warning("refused an instance from a peer not in the address allowlist")
            return STATUS_NOT_AUTHORISED
        if shutil.disk_usage(self.workdir).free < self.reserve_bytes:
            logger.warning("refused an instance: less than %d MB free in the workdir", self.reserve_bytes >> 20)
            return STATUS_OUT_OF_RESOURCES
        ds = event.dataset
        series_uid = str(ds.get("SeriesInstanceUID", ""))
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        if not _UID.match(series_uid) or not _UID.match(sop_uid):
            logger.warning("refused an instance without valid Series and SOP Instance UIDs")
            return STATUS_CANNOT_UNDERSTAND
        path = instance_path(self.workdir, series_uid, sop_uid)
        new = not path.exists()
        _write_atomic(path, event.encoded_dataset())
        state = self.queue.record_instance(series_uid, now=time.time(), new=new)
        logger.debug("stored an instance of series %s (%s)", series_key(series_uid), state)
        return STATUS_SUCCESS


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temp file in the same folder, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
