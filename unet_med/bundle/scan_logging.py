"""The static safety scan of a bundle's ``logging.conf``, done before MONAI applies it.

MONAI applies ``configs/logging.conf`` with ``logging.config.fileConfig``, which ``eval``s each handler's
``class=``, ``args=`` and ``kwargs=`` and imports each formatter's ``class=``, before any other part of the
bundle is parsed. The allow-list here: handlers ``StreamHandler`` and ``NullHandler``, formatter ``Formatter``
(no file, socket, HTTP or mail handlers), ``args=``/``kwargs=`` literals or ``sys.stdout``/``sys.stderr``. This
is stricter than MONAI 1.6.1's own check, which lets ``FileHandler`` write anywhere.

Example::

    for finding in scan_logging_config("received/unet/configs/logging.conf"):
        print(finding)  # logging.conf: [handler_h] class: class='subprocess.Popen' is not allowed; ...
"""

from __future__ import annotations

import ast
import configparser
import os
from pathlib import Path

from unet_med.bundle.scan import Finding

__all__ = ["LOGGING_CLASSES", "scan_logging_config"]

#: Logging classes a ``logging.conf`` may construct, by section kind.
LOGGING_CLASSES = {"handler": {"StreamHandler", "NullHandler"}, "formatter": {"Formatter"}}
_LOGGING_STREAMS = {"sys.stdout", "sys.stderr"}


def _logging_class_problem(kind: str, value: str) -> str | None:
    allowed = LOGGING_CLASSES[kind]
    name = value.strip()
    for prefix in ("logging.",):
        if name.startswith(prefix) and name.count(".") == 1:
            name = name[len(prefix) :]
    if name in allowed:
        return None
    return f"class={value!r} is not allowed; a {kind} may be one of {sorted(allowed)}"


def _logging_args_problem(value: str) -> str | None:
    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError as e:
        return f"{value!r} is not parsable ({e.msg})"
    for node in ast.walk(tree.body):
        if isinstance(node, (ast.Attribute, ast.Name)):
            name = ast.unparse(node)
            if name in _LOGGING_STREAMS or any(s.startswith(name + ".") for s in _LOGGING_STREAMS):
                continue
            return f"{value!r} references {name!r}; only literals, sys.stdout and sys.stderr are allowed"
        if not isinstance(node, (ast.Constant, ast.Tuple, ast.List, ast.Dict, ast.Set, ast.Load)):
            return f"{value!r} contains a {type(node).__name__}; only literals, sys.stdout and sys.stderr are allowed"
    return None


def scan_logging_config(path: str | os.PathLike, file: str | None = None) -> list[Finding]:
    """Findings for a ``logging.conf`` that would construct anything but a stream/null handler and a formatter,
    or evaluate anything but literals (``logging.config.fileConfig`` ``eval``s ``class=``, ``args=``, ``kwargs=``).
    """
    file = file or Path(path).name
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(Path(path).read_text(encoding="utf-8"))
    except (configparser.Error, UnicodeDecodeError) as e:
        return [Finding(file, "", f"not a parsable logging config ({e})")]
    findings = []
    for section in parser.sections():
        kind = section.split("_", 1)[0]
        for field, raw in parser.items(section, raw=True):
            value = raw.strip()
            if field == "class":
                if kind not in LOGGING_CLASSES:
                    problem: str | None = f"class= is not expected in [{section}]"
                else:
                    problem = _logging_class_problem(kind, value)
            elif field in ("args", "kwargs") and value:
                problem = _logging_args_problem(value)
            else:
                continue
            if problem:
                findings.append(Finding(file, f"[{section}] {field}", problem))
    return findings
