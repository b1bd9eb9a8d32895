"""``unet-med serve status`` and ``retry`` on a queue; ``serve`` refusing bad arguments before it listens."""

from __future__ import annotations

import json

from unet_med.cli import main
from unet_med.serve.queue import JobQueue, series_key


def test_status_prints_counts_and_the_oldest_waiting_series(tmp_path, capsys):
    queue = JobQueue(tmp_path / "queue.sqlite")
    queue.record_instance("1.2.3.1", now=100.0)
    queue.record_instance("1.2.3.2", now=200.0)
    queue.mark_complete("1.2.3.2", None, "no routing rule matches modality SR", last=200.0)
    assert main(["serve", "status", "--workdir", str(tmp_path), "--jobs"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["received"] == 1 and status["counts"]["ignored"] == 1
    assert status["oldest_waiting"]["series"] == series_key("1.2.3.1")
    assert [j["reason"] for j in status["jobs"]] == [None, "no routing rule matches modality SR"]
    assert "1.2.3.1" not in json.dumps(status)


def test_retry_puts_ignored_series_back(tmp_path, capsys):
    queue = JobQueue(tmp_path / "queue.sqlite")
    queue.record_instance("1.2.3.2", now=200.0)
    queue.mark_complete("1.2.3.2", None, "no rule", last=200.0)
    assert main(["serve", "retry", "--workdir", str(tmp_path), "--state", "ignored"]) == 0
    assert "1 series back to received" in capsys.readouterr().out
    assert queue.get("1.2.3.2").state == "received"


def test_status_without_a_queue_names_the_folder(tmp_path, capsys):
    assert main(["serve", "status", "--workdir", str(tmp_path)]) == 2
    assert f"{tmp_path}/queue.sqlite: no queue here" in capsys.readouterr().err


def test_serve_refuses_a_bad_destination_before_listening(tmp_path, capsys, repo_root):
    args = ["serve", "--bundle", str(repo_root / "bundles" / "unet"), "--workdir", str(tmp_path)]
    assert main([*args, "--destination", "PACS:4242"]) == 2
    assert "expected AET@HOST:PORT" in capsys.readouterr().err
    assert main(args) == 2
    assert "--destination required" in capsys.readouterr().err
