"""An Orthanc PACS for the node's round-trip tests: free localhost ports, a temp config and storage, stopped by PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serve.node_helpers import free_port, wait_until


class Orthanc:
    """A running Orthanc: its REST API on ``http_port``, DICOM on ``dicom_port`` as ``ORTHANC``."""

    ae_title = "ORTHANC"

    def __init__(self, folder: Path, node_port: int) -> None:
        self.http_port, self.dicom_port, self.node_port = free_port(), free_port(), node_port
        config = {
            "Name": "unet_med-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {"ainode": ["UNETMED", "127.0.0.1", node_port]},
            "StableAge": 2,
            "UnknownSopClassAccepted": True,
            "Plugins": [],
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "wb")
        self.proc = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=self.log, stderr=self.log)
        wait_until(self._up, 60, "Orthanc to answer over HTTP", every=0.2)

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {self.proc.returncode}; see {self.log.name}")
        try:
            self.get("/system")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.read()

    def get(self, path: str):
        return json.loads(self.request(path))

    def post(self, path: str, body) -> object:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return json.loads(self.request(path, data=data, method="POST"))

    def upload(self, folder: Path) -> str:
        """POSTs every file of a series folder; returns Orthanc's series ID."""
        answers = [self.post("/instances", p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]
        return answers[0]["ParentSeries"]

    def seg_instances(self) -> list[str]:
        return self.post("/tools/find", {"Level": "Instance", "Query": {"Modality": "SEG"}})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def orthanc_factory(tmp_path):
    """``make(node_port)`` starts an Orthanc that knows the node as modality ``ainode``; skipped without Orthanc."""
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc; .ci/run installs it)")
    started: list[Orthanc] = []

    def make(node_port: int) -> Orthanc:
        folder = tmp_path / f"orthanc{len(started)}"
        folder.mkdir()
        started.append(Orthanc(folder, node_port))
        return started[-1]

    yield make
    for server in started:
        server.stop()
