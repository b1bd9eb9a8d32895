"""Installing unet_med prints no packaging warnings: ``make run`` and ``make test`` start with ``pip install -e``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_BUILD_METADATA = """
import sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    build_meta.prepare_metadata_for_build_editable(sys.argv[1])
for w in caught:
    print(f"caught {w.category.__name__}: {str(w.message).splitlines()[0]}")
"""


def test_the_licence_is_an_spdx_string():
    text = (REPO / "pyproject.toml").read_text()  # tomllib is Python >= 3.11
    assert re.search(r'^license = "Apache-2.0"$', text, re.MULTILINE)
    assert "License ::" not in text  # licence classifiers are deprecated beside an SPDX licence


def test_building_the_metadata_warns_about_nothing(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _BUILD_METADATA, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert [line for line in out.stdout.splitlines() if line.startswith("caught ")] == []
    assert "Deprecat" not in out.stderr
    (metadata,) = tmp_path.glob("*/METADATA")
    assert "License-Expression: Apache-2.0" in metadata.read_text()
