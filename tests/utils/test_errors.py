"""One-line reports of errors a user can act on, and of Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from unet_med.data import DatasetError
from unet_med.utils import UsageError, brief_errors, usage_error_in
from unet_med.utils.errors import _hook


def _wrapped(error: BaseException) -> RuntimeError:
    """``error`` wrapped twice, as MONAI wraps errors raised while a config component is made."""
    try:
        try:
            raise error
        except BaseException as e:
            raise RuntimeError("Failed to instantiate {'_target_': ...}") from e
    except RuntimeError as outer:
        try:
            raise RuntimeError("Failed to evaluate ...") from outer
        except RuntimeError as top:
            return top


def test_usage_error_is_found_through_wrapping():
    inner = DatasetError("no dataset_dir given")
    assert isinstance(inner, UsageError)
    assert usage_error_in(_wrapped(inner)) is inner
    assert usage_error_in(_wrapped(ValueError("a bug"))) is None


def test_hook_prints_one_line_for_usage_errors_and_ctrl_c_and_tracebacks_otherwise(capsys):
    error = _wrapped(DatasetError("no dataset_dir given: pass --dataset_dir DIR"))
    _hook(type(error), error, error.__traceback__)
    assert capsys.readouterr().err == "error: no dataset_dir given: pass --dataset_dir DIR\n"
    _hook(KeyboardInterrupt, KeyboardInterrupt("stopped after epoch 3; resume with: ..."), None)
    assert capsys.readouterr().err.strip() == "stopped after epoch 3; resume with: ..."
    bug = _wrapped(ZeroDivisionError("division by zero"))
    _hook(type(bug), bug, bug.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err


@pytest.mark.parametrize(
    ("raised", "status", "expected"),
    [
        ("DatasetError('no dataset_dir given')", 1, "error: no dataset_dir given"),
        ("KeyboardInterrupt('stopped after epoch 2')", -2, "stopped after epoch 2"),
    ],
)
def test_a_process_ends_with_the_line_and_the_usual_status(raised, status, expected):
    code = textwrap.dedent(f"""
        from unet_med.data import DatasetError
        from unet_med.utils import brief_errors
        brief_errors()
        def nested():
            raise {raised}
        nested()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == status
    assert result.stderr.strip() == expected


def test_brief_errors_installs_the_hook(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    brief_errors()
    assert sys.excepthook is _hook
