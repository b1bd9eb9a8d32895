"""``OUT/qc.json``: per predicted case, what the run knows about how far to trust it.

One record per case, keyed by its mask's file name (identifier-free, see
:func:`unet_med.inference.output.case_name`): ``status`` (``"ok"``, ``"warning"`` when the input is unlike the
training data, ``"failed"``), the input's size and the grid the network ran on, and the input check against the
training fingerprint (every comparison with its value and accepted range, and the warnings;
:mod:`unet_med.inference.input_check`). Runs into the same folder add to the file: a record is replaced only by a
new prediction of the same output.

Example of one record::

    {"output": "lung1_image_seg.nrrd", "status": "warning", "input_size": [512, 512, 48],
     "grid": [299, 299, 73], "input_check": {"checks": [...], "warnings": ["spacing 0.57x0.57x5.00 mm, ..."]}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unet_med.utils.io import atomic_path

__all__ = ["QC_FILE", "case_record", "write_qc"]

#: The file name of the report in the output folder.
QC_FILE = "qc.json"


def case_record(result: Any, output: Path) -> dict[str, Any]:
    """The record of one :class:`~unet_med.inference.predictor.CaseResult` whose mask is (or was to be) ``output``."""
    status = "failed" if not result.ok else "warning" if result.warnings else "ok"
    record: dict[str, Any] = {"output": output.name, "status": status}
    if result.shape:
        record["input_size"] = list(result.shape)
    if result.grid:
        record["grid"] = list(result.grid)
    record["input_check"] = result.input_check.to_json() if result.input_check is not None else None
    if result.error:
        record["error"] = result.error
    return record


def write_qc(records: list[dict[str, Any]], output_dir: str | os.PathLike, bundle: str) -> Path:
    """Writes (atomically) ``output_dir/qc.json``, keeping the records of earlier runs for other outputs.

    Returns:
        The file written.
    """
    path = Path(output_dir) / QC_FILE
    cases: dict[str, dict[str, Any]] = {}
    try:
        for old in json.loads(path.read_text()).get("cases", []):
            cases[str(old["output"])] = old
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # no file yet, or not one of ours: start anew
        cases = {}
    for record in records:
        cases[record["output"]] = {**record, "bundle": bundle}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"cases": [cases[k] for k in sorted(cases)]}, indent=2) + "\n")
    return path
