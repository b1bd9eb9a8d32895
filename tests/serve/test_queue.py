"""The node's queue: every transition, the conditions on them, recovery after a crash, status and retry."""

from __future__ import annotations

import sqlite3

import pytest

from unet_med.serve.queue import MAX_RUNS, STATES, JobQueue, series_key

A, B, C = "1.2.826.0.1.1", "1.2.826.0.1.2", "1.2.826.0.1.3"


@pytest.fixture
def queue(tmp_path):
    return JobQueue(tmp_path / "queue.sqlite")


def _to_complete(queue: JobQueue, uid: str, now: float = 100.0, bundle: str = "unet") -> None:
    queue.record_instance(uid, now=now)
    (job,) = [j for j in queue.quiet_series(1.0, now=now + 5) if j.series_uid == uid]
    assert queue.mark_complete(uid, bundle, last=job.last_instance)


def test_the_queue_is_sqlite_in_wal_mode(tmp_path, queue):
    queue.record_instance(A)
    db = sqlite3.connect(tmp_path / "queue.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT state, instances FROM series").fetchall() == [("received", 1)]


def test_a_series_goes_received_complete_running_ready_sent(queue):
    for k in range(3):
        assert queue.record_instance(A, now=100.0 + k) == "received"
    assert queue.get(A).instances == 3
    assert queue.quiet_series(10.0, now=105.0) == []  # quiet for 3 s only
    (job,) = queue.quiet_series(10.0, now=113.0)
    assert queue.mark_complete(A, "unet", last=job.last_instance)
    job = queue.claim()
    assert (job.state, job.bundle, job.runs) == ("running", "unet", 1)
    assert queue.claim() is None  # one job, claimed once
    assert queue.finish(A, "/r/a_seg.dcm", "1.2.3.9")
    assert [j.series_uid for j in queue.due()] == [A]
    assert not queue.delivered(A, "1.2.3.other")  # only the recorded result counts
    assert queue.delivered(A, "1.2.3.9")
    assert queue.get(A).state == "sent"
    assert not queue.delivered(A, "1.2.3.9")  # sent exactly once


def test_an_instance_arriving_while_closing_keeps_the_series_received(queue):
    queue.record_instance(A, now=100.0)
    (job,) = queue.quiet_series(1.0, now=200.0)
    queue.record_instance(A, now=150.0)  # arrived after the watcher looked
    assert not queue.mark_complete(A, "unet", last=job.last_instance)
    assert queue.get(A).state == "received"


def test_no_rule_marks_the_series_ignored_with_its_reason(queue):
    queue.record_instance(A, now=100.0)
    assert queue.mark_complete(A, None, "no routing rule matches modality SR", last=100.0)
    job = queue.get(A)
    assert (job.state, job.reason) == ("ignored", "no routing rule matches modality SR")
    assert queue.claim() is None


def test_oldest_complete_series_runs_first(queue):
    _to_complete(queue, B, now=300.0)
    _to_complete(queue, A, now=100.0)
    _to_complete(queue, C, now=200.0)
    assert [queue.claim().series_uid for _ in range(3)] == [B, A, C]  # in the order they became complete


def test_a_failure_records_its_reason(queue):
    _to_complete(queue, A)
    queue.claim()
    assert queue.fail(A, "malformed series: a slice is missing")
    job = queue.get(A)
    assert (job.state, job.reason) == ("failed", "malformed series: a slice is missing")
    assert not queue.finish(A, "/r/a.dcm", "1.2")  # a failed series is not ready later


def test_recover_puts_running_series_back_and_gives_up_after_max_runs(queue):
    _to_complete(queue, A)
    for run in range(1, MAX_RUNS + 1):
        job = queue.claim()
        assert (job.series_uid, job.runs) == (A, run)
        assert queue.recover() == 1  # the node was killed while it ran
        assert queue.get(A).state == "complete"
    assert queue.claim() is None
    job = queue.get(A)
    assert job.state == "failed" and f"started {MAX_RUNS} times" in job.reason


def test_recover_leaves_ready_results_to_be_sent_with_the_same_uid(queue):
    _to_complete(queue, A)
    queue.claim()
    queue.finish(A, "/r/a_seg.dcm", "1.2.3.9")
    queue.retry_later(A, "no association", delay=60.0)
    assert queue.recover() == 0
    (job,) = queue.due()  # due at once after a restart
    assert (job.state, job.result_uid) == ("ready", "1.2.3.9")


def test_failed_delivery_waits_with_backoff(queue):
    _to_complete(queue, A)
    queue.claim()
    queue.finish(A, "/r/a_seg.dcm", "1.2.3.9")
    assert queue.retry_later(A, "no association with PACS@127.0.0.1:4242", delay=30.0)
    assert queue.due() == []
    job = queue.get(A)
    assert (job.state, job.send_attempts, job.reason) == ("ready", 1, "no association with PACS@127.0.0.1:4242")
    assert [j.series_uid for j in queue.due(now=job.next_try + 0.1)] == [A]


def test_a_late_instance_reopens_a_series_a_resent_one_does_not(queue):
    _to_complete(queue, A)
    queue.claim()
    assert queue.record_instance(A, now=500.0, new=False) == "running"  # an instance the node held already
    assert queue.record_instance(A, now=500.0) == "received"  # a new one: the series runs again, whole
    assert not queue.finish(A, "/r/stale.dcm", "1.2.3.1")  # the stale run's result is dropped
    job = queue.get(A)
    assert (job.state, job.runs, job.result_uid) == ("received", 0, None)


def test_status_counts_states_and_names_the_oldest_waiting_by_key(queue):
    queue.record_instance(A, now=100.0)
    _to_complete(queue, B, now=50.0)
    status = queue.status(now=160.0)
    assert set(status["counts"]) == set(STATES)
    assert status["counts"]["received"] == 1 and status["counts"]["complete"] == 1
    assert status["oldest_waiting"] == {"series": series_key(B), "state": "complete", "age_s": 110.0}
    assert B not in str(status)  # hashed keys only


def test_retry_puts_failed_series_back_by_key(queue):
    for uid in (A, B):
        _to_complete(queue, uid)
        queue.claim()
        queue.fail(uid, "broken")
    assert queue.retry([series_key(A)]) == 1
    assert (queue.get(A).state, queue.get(B).state) == ("received", "failed")
    assert [j.series_uid for j in queue.quiet_series(10.0)] == [A]  # routed again on the watcher's next pass
    with pytest.raises(ValueError, match="only failed or ignored"):
        queue.retry(state="sent")


def test_the_queue_survives_reopening(tmp_path):
    JobQueue(tmp_path / "q.sqlite").record_instance(A, now=1.0)
    assert JobQueue(tmp_path / "q.sqlite").get(A).state == "received"
