"""``unet-med bundle scan|pack|unpack``: exit status and messages."""

from __future__ import annotations

import json

from unet_med.cli import main


def test_scan_reports_findings_and_exits_nonzero(bundle_copy, capsys):
    assert main(["bundle", "scan", str(bundle_copy)]) == 0
    config = bundle_copy / "configs" / "evaluate.json"
    content = json.loads(config.read_text())
    content["run"] = ["$os.remove(@model_file)"]
    config.write_text(json.dumps(content))
    capsys.readouterr()
    assert main(["bundle", "scan", str(bundle_copy)]) == 1
    out = capsys.readouterr().out
    assert "configs/evaluate.json: run#0: os.remove is not allowed" in out


def test_unpack_exit_status(packed, tmp_path, tamper, capsys):
    assert main(["bundle", "unpack", str(tamper(packed, tmp_path / "bad.zip")), str(tmp_path / "bad")]) == 1
    assert "sha256 does not match" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["bundle", "unpack", str(packed), str(tmp_path / "good")]) == 0
    assert (tmp_path / "good" / "models" / "model.ts").is_file()


def test_pack_without_onnx(bundle_copy, tmp_path, capsys):
    out = tmp_path / "unet.zip"
    assert main(["bundle", "pack", str(bundle_copy), str(out), "--no-onnx"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)  # logging may print before it
    assert main(["bundle", "verify", str(out), "--no-onnx"]) == 0
    assert "SKIP  onnx" in capsys.readouterr().out
