"""``unet-med bundle recognize|pack|unpack|keygen|sign|verify``: exit status and messages."""

from __future__ import annotations

import json

import pytest

from unet_med.cli import main


def test_recognize_reports_custom_code_and_exits_nonzero(bundle_copy, capsys):
    assert main(["bundle", "recognize", str(bundle_copy)]) == 0
    config = bundle_copy / "configs" / "evaluate.json"
    content = json.loads(config.read_text())
    content["run"] = ["$os.remove(@model_file)"]
    config.write_text(json.dumps(content))
    capsys.readouterr()
    assert main(["bundle", "recognize", str(bundle_copy)]) == 1
    out = capsys.readouterr().out
    assert "configs/evaluate.json: run#0:" in out and "custom code" in out


def test_unpack_exit_status(packed, tmp_path, tamper, capsys):
    assert main(["bundle", "unpack", str(tamper(packed, tmp_path / "bad.zip")), str(tmp_path / "bad")]) == 1
    assert "sha256 does not match" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["bundle", "unpack", str(packed), str(tmp_path / "good")]) == 0
    assert (tmp_path / "good" / "models" / "model.pt").is_file()


def test_pack_then_verify_without_onnx(bundle_copy, tmp_path, capsys):
    out = tmp_path / "unet.zip"
    assert main(["bundle", "pack", str(bundle_copy), str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)  # logging may print before it
    assert main(["bundle", "verify", str(out), "--no-onnx"]) == 0
    assert "SKIP  onnx" in capsys.readouterr().out


@pytest.fixture
def stub_evaluation(monkeypatch):
    """Replaces the checks that evaluate the bundle (seconds each, covered in test_verify.py) with passes, so these
    tests see only where the signature check stands among the others."""
    from unet_med.bundle import verify

    def passed(*args, **kwargs):
        return "PASS", "stub", []

    for name in ("_net_in_out", "_torchscript", "_onnx"):
        monkeypatch.setattr(verify, name, passed)
    monkeypatch.setattr(verify, "_end_to_end", passed)


def _lines(out: str) -> dict[str, str]:
    """The report's check lines by check name: ``{"signature": "PASS ...", ...}``."""
    lines = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("PASS", "FAIL", "SKIP"):
            name = line[8:24].strip()
            lines[name] = f"{parts[0]} {line[24:].strip()}"
    return lines


def test_keygen_sign_verify(bundle_copy, tmp_path, capsys, stub_evaluation):
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    assert main(["bundle", "keygen", "--private", str(tmp_path / "k.pem"), "--public", str(trusted / "k.pem")]) == 0
    key_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert main(["bundle", "sign", str(bundle_copy), "--key", str(tmp_path / "k.pem"), "--signer", "Dr A, St B"]) == 0
    capsys.readouterr()

    assert main(["bundle", "verify", str(bundle_copy), "--no-onnx", "--trusted-keys", str(trusted)]) == 0
    out = capsys.readouterr().out
    lines = _lines(out)
    assert next(iter(lines)) == "signature", out  # first, before anything else
    assert lines["signature"].startswith("PASS signed by 'Dr A, St B'") and key_id in lines["signature"]
    assert lines["manifest"].startswith("PASS") and lines["end to end"].startswith("PASS")

    (bundle_copy / "configs" / "inference.json").write_text("{}")
    assert main(["bundle", "verify", str(bundle_copy), "--no-onnx", "--trusted-keys", str(trusted)]) == 1
    lines = _lines(capsys.readouterr().out)
    assert lines["signature"].startswith("FAIL refused") and "configs/inference.json" in lines["signature"]
    assert all(v.startswith("SKIP not run: the signature was refused") for k, v in lines.items() if k != "signature")
    assert len(lines) == 8  # signature, manifest, recognition, metadata, and the four run-stage checks


def test_verify_refuses_unsigned_unless_allowed(bundle_copy, tmp_path, capsys, stub_evaluation):
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    main(["bundle", "keygen", "--private", str(tmp_path / "k.pem"), "--public", str(trusted / "k.pem")])
    capsys.readouterr()
    assert main(["bundle", "verify", str(bundle_copy), "--no-onnx", "--trusted-keys", str(trusted)]) == 1
    assert _lines(capsys.readouterr().out)["signature"].startswith("FAIL refused: unsigned")
    args = ["bundle", "verify", str(bundle_copy), "--no-onnx", "--trusted-keys", str(trusted), "--allow-unsigned"]
    assert main(args) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines["signature"].startswith("SKIP unsigned, accepted") and lines["recognition"].startswith("PASS")
    assert main(["bundle", "verify", str(bundle_copy), "--allow-unsigned"]) == 2
    assert "--allow-unsigned needs --trusted-keys" in capsys.readouterr().err


def test_sign_refuses_a_key_that_is_not_a_private_key(bundle_copy, tmp_path, capsys):
    (tmp_path / "k.pem").write_text("not a key")
    assert main(["bundle", "sign", str(bundle_copy), "--key", str(tmp_path / "k.pem"), "--signer", "A"]) == 1
    assert "not an unencrypted Ed25519 private key" in capsys.readouterr().err
    assert not (bundle_copy / "signature.json").exists()
