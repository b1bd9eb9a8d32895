"""``unet-med serve`` as a subprocess: series in by C-STORE, SEGs out, kill -9 and restart, a destination down."""

from __future__ import annotations

import os
import signal
import time

import pydicom
import pytest

from tests.serve.node_helpers import (
    RecordingSCP,
    free_port,
    node_listening,
    send_series,
    start_node,
    stop_node,
    synthetic_series,
    wait_until,
)
from unet_med.serve.queue import JobQueue, series_key

pytest.importorskip("pynetdicom")

PATIENT = ("Test^Patient", "TEST01", "19700101")  # what make_series writes: never in the node's log


def _source_series(ds: pydicom.Dataset) -> str:
    return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)


@pytest.mark.slow
def test_killed_node_resumes_every_series_and_sends_each_result_once(tmp_path):
    """A destination down, then kill -9 with one series ready (result written, undelivered), one running and one
    queued; after a restart with the destination up every series ends sent, one SEG each, the ready one with the
    SOP Instance UID recorded before the kill."""
    sources = [synthetic_series(tmp_path / f"in{k}", seed=k) for k in range(3)]
    uids = [str(pydicom.dcmread(next(s.iterdir())).SeriesInstanceUID) for s in sources]
    workdir, port, pacs_port = tmp_path / "work", free_port(), free_port()
    node = start_node(workdir, port, f"PACS@127.0.0.1:{pacs_port}")  # nothing listens there yet
    pacs = None
    try:
        wait_until(lambda: node_listening(port), 120, "the node to listen")
        assert send_series(sources[0], port) == [0] * 20
        queue = JobQueue(workdir / "queue.sqlite")
        wait_until(lambda: (queue.get(uids[0]) or 0) and queue.get(uids[0]).send_attempts >= 1, 60, "a failed send")
        ready = queue.get(uids[0])
        assert ready.state == "ready" and "no association" in ready.reason
        for source in sources[1:]:
            assert send_series(source, port) == [0] * 20
        wait_until(lambda: queue.get(uids[1]) and queue.get(uids[1]).state == "running", 60, "a running series")
        assert queue.get(uids[2]).state in ("received", "complete")
        os.kill(node.pid, signal.SIGKILL)
        node.wait()

        pacs = RecordingSCP(port=pacs_port)
        node = start_node(workdir, port, pacs.destination)
        wait_until(lambda: all(queue.get(u).state == "sent" for u in uids), 120, "every series sent")
        time.sleep(1.0)  # nothing more arrives
    finally:
        stop_node(node)
        if pacs is not None:
            pacs.stop()

    assert sorted(_source_series(ds) for ds in pacs.received) == sorted(uids)  # one SEG per series, none twice
    assert all(ds.Modality == "SEG" for ds in pacs.received)
    by_series = {_source_series(ds): str(ds.SOPInstanceUID) for ds in pacs.received}
    assert by_series[uids[0]] == ready.result_uid  # the idempotency key survived the kill
    assert queue.get(uids[1]).runs == 2  # killed while running: run again
    assert list((workdir / "incoming").iterdir()) == [] and list((workdir / "results").iterdir()) == []
    log = (tmp_path / "node.log").read_text()
    assert series_key(uids[0]) in log
    for secret in (*PATIENT, *uids):
        assert secret not in log
