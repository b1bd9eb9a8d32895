"""The Storage SCP in-process: stores and records, refuses when the disk is short, keeps to its allowlists."""

from __future__ import annotations

import pydicom
import pytest

from tests.serve.node_helpers import free_port, send_series, synthetic_series
from unet_med.serve.queue import JobQueue
from unet_med.serve.rules import Rule
from unet_med.serve.scp import STATUS_NOT_AUTHORISED, STATUS_OUT_OF_RESOURCES, StorageSCP, instance_path
from unet_med.serve.watcher import CompletionWatcher

pytest.importorskip("pynetdicom")


@pytest.fixture
def series(tmp_path):
    return synthetic_series(tmp_path / "in", seed=1)


def _scp(tmp_path, **kwargs) -> StorageSCP:
    scp = StorageSCP(tmp_path / "work", JobQueue(tmp_path / "work" / "q.sqlite"), port=free_port(), **kwargs)
    scp.start()
    return scp


def test_instances_are_stored_byte_for_byte_and_recorded(tmp_path, series):
    scp = _scp(tmp_path, reserve_bytes=0)
    try:
        assert send_series(series, scp.address[1]) == [0] * 20
    finally:
        scp.stop()
    first = pydicom.dcmread(sorted(series.iterdir())[0])
    uid = str(first.SeriesInstanceUID)
    stored = instance_path(tmp_path / "work", uid, str(first.SOPInstanceUID))
    assert pydicom.dcmread(stored).PixelData == first.PixelData
    assert len(list(stored.parent.glob("*.dcm"))) == 20 and not list(stored.parent.glob(".*"))
    job = scp.queue.get(uid)
    assert (job.state, job.instances) == ("received", 20)
    # quiet: routed by its modality (MR) to the rule's bundle; a CT-only rule would ignore it
    watcher = CompletionWatcher(scp.queue, tmp_path / "work", [Rule("unet", modality=("MR",))], complete_after=0)
    assert watcher.check() == 1 and scp.queue.get(uid).bundle == "unet"


def test_a_resent_series_is_not_counted_twice(tmp_path, series):
    scp = _scp(tmp_path, reserve_bytes=0)
    try:
        send_series(series, scp.address[1])
        send_series(series, scp.address[1])
    finally:
        scp.stop()
    (job,) = scp.queue.jobs()
    assert job.instances == 20


def test_a_short_disk_refuses_with_out_of_resources(tmp_path, series):
    scp = _scp(tmp_path, reserve_bytes=1 << 62)
    try:
        assert set(send_series(series, scp.address[1])) == {STATUS_OUT_OF_RESOURCES}
    finally:
        scp.stop()
    assert scp.queue.jobs() == [] and not (tmp_path / "work" / "incoming").exists()


def test_calling_ae_allowlist_rejects_other_titles(tmp_path, series):
    scp = _scp(tmp_path, reserve_bytes=0, allow_ae=["PACS"])
    try:
        assert send_series(series, scp.address[1], calling_ae="INTRUDER") == [-1]  # association rejected
        assert send_series(series, scp.address[1], calling_ae="PACS") == [0] * 20
    finally:
        scp.stop()


def test_address_allowlist_refuses_other_peers(tmp_path, series):
    scp = _scp(tmp_path, reserve_bytes=0, allow_hosts=["10.9.9.9"])
    try:
        assert set(send_series(series, scp.address[1])) == {STATUS_NOT_AUTHORISED}
    finally:
        scp.stop()
    assert scp.queue.jobs() == []
