"""The logging.conf scan: only stream/null handlers and the plain formatter, literal arguments."""

from __future__ import annotations

import pytest

from unet_med.bundle.scan_logging import scan_logging_config


@pytest.mark.parametrize(
    ("section", "fields", "bad"),
    [
        ("handler_consoleHandler", {"class": "StreamHandler", "args": "(sys.stdout,)"}, False),
        ("handler_consoleHandler", {"class": "logging.NullHandler", "args": "()"}, False),
        ("handler_consoleHandler", {"class": "subprocess.Popen", "args": "(['id'],)"}, True),
        ("handler_consoleHandler", {"class": "FileHandler", "args": "('/tmp/x.log', 'w')"}, True),
        ("handler_consoleHandler", {"class": "handlers.SocketHandler", "args": "('evil', 9)"}, True),
        ("handler_consoleHandler", {"class": "StreamHandler", "args": "(__import__('os').system('id'),)"}, True),
        ("handler_consoleHandler", {"class": "StreamHandler", "args": "(open('/tmp/x', 'w'),)"}, True),
        ("formatter_fullFormatter", {"class": "pathlib.Path"}, True),
        ("formatter_fullFormatter", {"class": "logging.Formatter"}, False),
    ],
)
def test_logging_config_rules(tmp_path, section, fields, bad):
    body = "\n".join(f"{k}={v}" for k, v in fields.items())
    conf = tmp_path / "logging.conf"
    conf.write_text(f"[loggers]\nkeys=root\n\n[{section}]\n{body}\n")
    findings = scan_logging_config(conf)
    assert bool(findings) is bad, findings
    assert all(f.key.startswith(f"[{section}]") for f in findings)
