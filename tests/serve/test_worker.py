"""The worker, watcher and sender in-process with the reference bundle: bad series fail or are ignored with a
reason while good ones are segmented and delivered; results equal ``unet-med predict``'s; files removed after."""

from __future__ import annotations

import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.dicom.make_series import write_sr
from tests.serve.node_helpers import UNET, RecordingSCP, free_port, send_series, synthetic_series
from unet_med.cli import main
from unet_med.dicom import read_series
from unet_med.serve.queue import JobQueue
from unet_med.serve.rules import Rule
from unet_med.serve.scp import StorageSCP
from unet_med.serve.sender import Destination, Sender
from unet_med.serve.watcher import CompletionWatcher
from unet_med.serve.worker import Worker

pytest.importorskip("pynetdicom")


def _uid(folder) -> str:
    return str(pydicom.dcmread(next(folder.iterdir())).SeriesInstanceUID)


def test_bad_series_fail_or_are_ignored_and_good_ones_are_delivered(tmp_path):
    good = synthetic_series(tmp_path / "good", seed=2)
    gap = synthetic_series(tmp_path / "gap", seed=3)
    sorted(gap.iterdir())[7].unlink()  # a missing slice: not a regular volume
    ct = synthetic_series(tmp_path / "ct", seed=5, modality="CT")  # no rule for CT
    (tmp_path / "sr").mkdir()
    write_sr(tmp_path / "sr" / "sr.dcm")  # a non-image object

    work = tmp_path / "work"
    queue = JobQueue(work / "queue.sqlite")
    scp = StorageSCP(work, queue, port=free_port(), reserve_bytes=0)
    scp.start()
    pacs = RecordingSCP()
    try:
        for folder in (good, gap, ct, tmp_path / "sr"):
            assert set(send_series(folder, scp.address[1])) == {0}
        watcher = CompletionWatcher(queue, work, [Rule("unet", modality=("MR",))], complete_after=0)
        assert watcher.check() == 4
        worker = Worker(queue, work, {"unet": UNET}, "dicom-seg", device="cpu")
        while worker.run_one() is not None:
            pass
        sender = Sender(queue, Destination.parse(pacs.destination), "UNETMED", work)
        assert sender.send_due() == 1
    finally:
        scp.stop()
        pacs.stop()

    assert queue.get(_uid(good)).state == "sent"
    failed = queue.get(_uid(gap))
    assert failed.state == "failed" and "missing" in failed.reason and _uid(gap) not in failed.reason
    assert (queue.get(_uid(ct)).state, queue.get(_uid(ct)).reason) == ("ignored", "no routing rule matches modality CT")
    sr = [j for j in queue.jobs() if j.series_uid not in {_uid(good), _uid(gap), _uid(ct)}]
    assert [(j.state, j.reason) for j in sr] == [("ignored", "no routing rule matches modality SR")]

    # delivered: its instances and result are gone; the others' instances are kept for a retry
    kept = sorted(p.name for p in (work / "incoming").iterdir())
    assert kept == sorted(j.key for j in queue.jobs() if j.state != "sent")
    assert list((work / "results").iterdir()) == []

    (seg,) = pacs.received
    assert main(["predict", "--quiet", "--bundle", str(UNET), "--input", str(good), "--output",
                 str(tmp_path / "p"), "--format", "dicom-seg"]) in (0, 3)  # fmt: skip
    uids = [str(ds.SOPInstanceUID) for ds in read_series(good).datasets]
    ours = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(uids, combine_segments=True)
    theirs = hd.seg.segread(next((tmp_path / "p").glob("*_seg.dcm"))).get_pixels_by_source_instance(
        uids, combine_segments=True
    )
    assert ours.any()
    np.testing.assert_array_equal(ours, theirs)


def test_a_changed_bundle_is_recognised_again_and_refused_when_tampered(tmp_path):
    bundle = tmp_path / "unet"
    shutil.copytree(UNET, bundle)
    worker = Worker(JobQueue(tmp_path / "q.sqlite"), tmp_path, {"unet": bundle}, "dicom-seg", device="cpu")
    config = bundle / "configs" / "inference.json"
    config.write_text(config.read_text().replace('"network_def"', '"network_def_x": "$print(1)", "network_def"', 1))
    worker.refresh()
    assert "unet" not in worker.predictors
    assert "differs from what the installed unet_med template makes" in worker.errors["unet"], worker.errors["unet"]
