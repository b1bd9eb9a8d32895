"""Coded concepts as data: the task's ``class_codes``, checked, carried into the configs and the model card."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pydicom.sr.codedict import codes

from unet_med.bundle.task import TaskError, load_task, validate_task
from unet_med.bundle.template import render
from unet_med.dicom import class_concepts

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs" / "task.json").is_file())
NEOPLASM = {
    "category": {"scheme": "SCT", "value": "49755003", "meaning": "Morphologically Abnormal Structure"},
    "type": {"scheme": "SCT", "value": "108369006", "meaning": "Neoplasm"},
}
# Bundles whose foreground classes the DICOM standard has no code for (docs/dicom.md says which and why).
UNCODED = {"em_membranes": {"membrane"}, "nuclei_fluorescence": {"boundary"}}


def _meanings(scheme: str, value: str) -> set[str]:
    """The meanings the DICOM standard's context groups (pydicom's code dictionary) give a code."""
    from pydicom.sr import _concepts_dict

    entries = _concepts_dict.concepts.get(scheme, {}).values()
    return {entry[value][0] for entry in entries if value in entry and entry[value][1]}  # [1]: the CIDs using it


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_shipped_codes_are_the_standards(bundle):
    task = load_task(bundle)
    coded = task.get("class_codes", {})
    assert set(task["classes"][1:]) - set(coded) == UNCODED.get(bundle.name, set())
    categories = {c.value for c in (getattr(codes.cid7150, n) for n in codes.cid7150.dir())}
    for name, concept in coded.items():
        assert concept["category"]["value"] in categories, name  # CID 7150
        for part in ("category", "type"):
            code = concept[part]
            assert code["meaning"] in _meanings(code["scheme"], code["value"]), (name, part, code)


def test_codes_reach_inference_json_and_the_card():
    task = load_task(REPO / "bundles" / "sarcoma_ct")
    files = render(task)
    inference, metadata = json.loads(files["inference.json"]), json.loads(files["metadata.json"])
    assert inference["class_codes"] == {"tumour": NEOPLASM} == metadata["class_codes"]
    assert inference["output_format"] == "nifti"
    save = inference["postprocessing"]["transforms"][-1]
    assert save["output_format"] == "@output_format" and save["class_codes"] == "@class_codes"
    assert save["algorithm"] == [task["card"]["name"], task["card"]["version"]]


def test_class_codes_are_checked():
    task = load_task(REPO / "bundles" / "sarcoma_ct")
    bad = copy.deepcopy(task)
    bad["class_codes"] = {"background": NEOPLASM}
    with pytest.raises(TaskError, match=r"class_codes: 'background' is not one of the foreground classes"):
        validate_task(bad)
    bad["class_codes"] = {"tumour": {"category": NEOPLASM["category"]}}
    with pytest.raises(TaskError, match="'type' is a required property"):
        validate_task(bad)
    bad["class_codes"] = {"tumour": {**NEOPLASM, "type": {**NEOPLASM["type"], "meaning": "$import os"}}}
    with pytest.raises(TaskError, match=r"class_codes\.tumour\.type\.meaning"):
        validate_task(bad)


def test_class_concepts_and_interpreted_types():
    hippo = load_task(REPO / "bundles" / "hippocampus_mri")
    concepts = class_concepts(hippo["classes"], hippo["class_codes"])
    assert [(c.label, c.name, c.rt_interpreted_type) for c in concepts] == [
        (1, "anterior", "ORGAN"),
        (2, "posterior", "ORGAN"),
    ]
    assert concepts[0].codes()[1].value == "5366008"
    tumour = class_concepts(["background", "tumour"], {"tumour": NEOPLASM})[0]
    assert tumour.rt_interpreted_type == "GTV"
    with pytest.raises(ValueError, match="class 'lesion' has no coded concept"):
        class_concepts(["background", "lesion"])[0].codes()
