"""Delivering results: C-STORE (pynetdicom SCU) of each ``ready`` result to the destination, retried with backoff.

The result's SOP Instance UID, recorded in the queue when it was written, is the idempotency key: a series is
marked ``sent`` only for that UID, and after a restart the same file (same UID) is sent again, so a PACS that got
it before the crash stores it once. A destination that is down or refuses is tried again after 2, 4, 8, ... s
(at most ``max_backoff``); the result stays on disk until it is delivered.

Example::

    dest = Destination.parse("ORTHANC@127.0.0.1:4242")
    send_file(dest, "UNETMED", "results/abc_seg.dcm")  # raises DeliveryError when not stored
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from unet_med.serve.queue import JobQueue

__all__ = ["DeliveryError", "Destination", "Sender", "send_file"]

logger = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """The destination could not be reached or did not store the result."""


@dataclasses.dataclass(frozen=True)
class Destination:
    """A DICOM peer: AE title, host, port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AET@HOST:PORT``.

        Raises:
            ValueError: a malformed destination.
        """
        m = re.fullmatch(r"([^@]{1,16})@([^:@]+):(\d{1,5})", text.strip())
        if not m:
            raise ValueError(f"--destination {text!r}: expected AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
        return cls(m.group(1), m.group(2), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send_file(
    destination: Destination, calling_ae: str, path: str | os.PathLike, timeout: float = 30.0, tls: Any = None
) -> None:
    """C-STOREs one DICOM file to ``destination`` (over TLS with ``tls``, a client ``ssl.SSLContext``).

    Raises:
        DeliveryError: no association, no accepted context, or a status other than success.
    """
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(ds.SOPClassUID, [str(ds.file_meta.TransferSyntaxUID)])
    tls_args = None if tls is None else (tls, destination.host)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        raise DeliveryError(f"no association with {destination}")
    try:
        status = assoc.send_c_store(ds)
    except ValueError as e:
        raise DeliveryError(f"{destination} accepted no presentation context for the result ({e})") from e
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1))
    if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success and its warnings
        raise DeliveryError(f"{destination} answered C-STORE with status 0x{code & 0xFFFF:04X}")


class Sender:
    """Sends every due ``ready`` result, marks it ``sent`` and deletes the series' files (unless ``keep``).

    Args:
        queue: the node's queue.
        destination: where results go.
        calling_ae: the node's AE title.
        workdir: the node's folder (received series under ``incoming/``).
        keep: keep received instances and results after delivery.
        max_backoff: the longest wait between two attempts, in seconds.
        tls: a client ``ssl.SSLContext`` (:func:`unet_med.serve.tls.client_context`) to send over DICOM TLS.
    """

    def __init__(
        self,
        queue: JobQueue,
        destination: Destination,
        calling_ae: str,
        workdir: str | os.PathLike,
        keep: bool = False,
        max_backoff: float = 60.0,
        tls: Any = None,
    ) -> None:
        self.queue = queue
        self.destination = destination
        self.calling_ae = calling_ae
        self.workdir = Path(workdir)
        self.keep = keep
        self.max_backoff = max_backoff
        self.tls = tls

    def send_due(self) -> int:
        """One pass over the due results; returns how many were delivered."""
        sent = 0
        for job in self.queue.due():
            try:
                if not job.result_path or not Path(job.result_path).is_file():
                    self.queue.fail(job.series_uid, "the result file is missing", expect="ready")
                    logger.error("series %s: result file missing; failed", job.key)
                    continue
                send_file(self.destination, self.calling_ae, job.result_path, tls=self.tls)
            except (DeliveryError, OSError) as e:
                delay = min(2.0 ** (job.send_attempts + 1), self.max_backoff)
                self.queue.retry_later(job.series_uid, str(e), delay)
                logger.warning("series %s: delivery failed (%s); next try in %.0f s", job.key, e, delay)
                continue
            if self.queue.delivered(job.series_uid, job.result_uid or ""):
                sent += 1
                logger.info("series %s: result sent to %s", job.key, self.destination)
                if not self.keep:
                    self.remove(job.key, job.result_path)
        return sent

    def remove(self, key: str, result_path: str | None) -> None:
        """Deletes a delivered series' instances and result."""
        shutil.rmtree(self.workdir / "incoming" / key, ignore_errors=True)
        if result_path:
            Path(result_path).unlink(missing_ok=True)
