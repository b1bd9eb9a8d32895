"""Routing rules: first match wins, defaults from the task modality, bad rules named before the node starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_med.serve.rules import Rule, default_rules, load_rules, route

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path, rules) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": rules}))
    return path


def test_first_matching_rule_wins(tmp_path):
    rules = load_rules(
        _write(tmp_path, [
            {"bundle": "sarcoma", "modality": "CT", "body_part": ["leg", "THIGH"]},
            {"bundle": "hippo", "modality": ["MR"], "series_description": "(?i)t1.*3d"},
            {"bundle": "any_ct", "modality": "CT"},
        ]),
        bundles={"sarcoma": "ct", "hippo": "mri", "any_ct": "ct"},
    )  # fmt: skip
    assert route(rules, {"Modality": "CT", "BodyPartExamined": "Leg"}) == "sarcoma"
    assert route(rules, {"Modality": "CT", "BodyPartExamined": "CHEST"}) == "any_ct"
    assert route(rules, {"Modality": "MR", "SeriesDescription": "sag T1 MPRAGE 3D"}) == "hippo"
    assert route(rules, {"Modality": "MR", "SeriesDescription": "T2 FLAIR"}) is None
    assert route(rules, {"Modality": "SR"}) is None


def test_default_rules_come_from_each_task_modality():
    rules = default_rules({"sarcoma_ct": "ct", "hippocampus_mri": "mri", "em": "microscopy"})
    assert rules == [Rule("sarcoma_ct", modality=("CT",)), Rule("hippocampus_mri", modality=("MR",))]


def test_default_rules_skip_multichannel_and_2d_bundles():
    from unet_med.inference.bundle_model import load_bundle

    models = {name: load_bundle(REPO / "bundles" / name) for name in ("sarcoma_ct", "brats_mri", "em_membranes")}
    assert default_rules(models) == [Rule("sarcoma_ct", modality=("CT",))]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"bundle": "nope"}, "bundle 'nope' is not served"),
        ({"bundle": "a", "modalty": "CT"}, "unknown key"),
        ({"bundle": "a", "series_description": "("}, "not a regular expression"),
        ({"bundle": "a", "channels": 4}, "takes 4 channels; a series has one"),
        ({"modality": "CT"}, "a rule is an object with a 'bundle'"),
    ],
)
def test_bad_rules_are_named(tmp_path, rule, message):
    with pytest.raises(ValueError, match=f"rules.json: rule 1: .*{message}"):
        load_rules(_write(tmp_path, [rule]), bundles={"a": "ct"})
