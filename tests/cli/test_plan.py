"""``unet-med plan`` and ``unet-med bundle new`` say what they wrote and the next command."""

from __future__ import annotations

import json
from pathlib import Path

from unet_med.cli import main
from unet_med.data.synthetic import make_demo_dataset_3d


def test_plan_then_new_each_name_what_they_wrote_and_the_next_command(tmp_path: Path, capsys, monkeypatch):
    data = make_demo_dataset_3d(tmp_path / "MyTask", num_cases=3, shape=(24, 24, 16))
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(data), "--out", "my_task.json", "--name", "My task"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"wrote my_task.json: the task description 'My task', planned from 3 case(s) of {data}"
    assert "3 classes" in out and "patch [" in out
    assert lines[-1] == "  unet-med bundle new bundles/my_task --task my_task.json"
    assert not out.lstrip().startswith("{")  # a summary, not the JSON that was written
    task = json.loads(Path("my_task.json").read_text())

    assert main(["plan", str(data), "--out", "again.json", "--name", "My task", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == task

    assert main(["bundle", "new", "bundles/my_task", "--task", "my_task.json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"made {Path('bundles/my_task')} from my_task.json: configs/ (")
    train = "python -m monai.bundle run training --config_file bundles/my_task/configs/train.json --dataset_dir DATA"
    assert train in out
    assert "unet-med bundle cv bundles/my_task --dataset_dir DATA" in out
