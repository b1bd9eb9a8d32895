"""Shared checks for the bundles in ``bundles/``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from monai.bundle import verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def verify_offline(shared_dir: Path) -> Callable[[str], dict[str, Any]]:
    """Runs MONAI's metadata (official schema, offline) and network in/out checks on ``bundles/<name>``; returns
    its metadata. Skips when the schema is not beside the repository."""
    schema = shared_dir / "schemas" / "meta_schema_20240725.json"

    def check(name: str) -> dict[str, Any]:
        if not schema.is_file():
            pytest.skip(f"schema not found: {schema}")
        configs = REPO / "bundles" / name / "configs"
        verify_metadata(meta_file=str(configs / "metadata.json"), filepath=str(schema))
        verify_net_in_out(
            net_id="network_def", meta_file=str(configs / "metadata.json"), config_file=str(configs / "train.json")
        )
        return json.loads((configs / "metadata.json").read_text())

    return check
