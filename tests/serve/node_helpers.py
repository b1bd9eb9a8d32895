"""Helpers for the node's tests: free ports, a recording destination SCP, an SCU, the node as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from tests.dicom.make_series import write_series
from unet_med.data import synthetic_volume

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def synthetic_series(folder: Path, seed: int = 0, modality: str = "MR") -> Path:
    """A small series (40 x 44 x 20) with new UIDs; the reference bundle finds its classes in it."""
    image = (synthetic_volume((40, 44, 20), num_classes=3, seed=seed)[0] * 300).astype(np.int16)
    files = write_series(folder, image, spacing=(1.2, 1.1, 2.5))
    if modality != "CT":
        for path in files:
            ds = pydicom.dcmread(path)
            ds.Modality = modality
            ds.save_as(path)
    return folder


class RecordingSCP:
    """A Storage SCP on a free localhost port that keeps every dataset it is sent (a stand-in PACS)."""

    def __init__(self, ae_title: str = "PACS", port: int | None = None) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.ae_title = ae_title
        self.port = port or free_port()
        self.received: list[pydicom.Dataset] = []
        self.arrived: list[float] = []  # time.perf_counter() of each
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        self._server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.received.append(ds)
            self.arrived.append(time.perf_counter())
        return 0x0000

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()


def send_series(folder: Path, port: int, calling_ae: str = "SCANNER", called_ae: str = "UNETMED") -> list[int]:
    """C-STOREs every file in ``folder`` to the node; returns the statuses."""
    from pynetdicom import AE

    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
    ae = AE(ae_title=calling_ae)
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        return [-1]
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def start_node(
    workdir: Path, port: int, destination: str, *args: str, bundle: Path = UNET, log: Path | None = None
) -> subprocess.Popen:
    """``unet-med serve`` with ``bundle`` (the reference one) as a subprocess (its log in ``workdir/../node.log``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    log = log or workdir.parent / "node.log"
    cmd = [
        sys.executable, "-m", "unet_med", "serve", "--bundle", str(bundle), "--workdir", str(workdir),
        "--port", str(port), "--destination", destination, "--complete-after", "1", "--reserve-mb", "10",
        "--threads", "1", "--device", "cpu", *args,
    ]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def node_listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
