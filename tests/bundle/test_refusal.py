"""Refusals that point at the file the user changed, show where two strings first differ and give the next step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unet_med.bundle.integrity import TRUSTED_KEYS_ENV
from unet_med.bundle.manifest import BundleError
from unet_med.bundle.pack import unpack_bundle
from unet_med.bundle.recognize import TRUST_FLAG, require_recognized
from unet_med.cli import main

EDIT = ("for CPU training", "for CPU-only training")  # one card text, past the first 80 characters


def _edit_card(bundle: Path) -> None:
    path = bundle / "configs" / "task.json"
    task = json.loads(path.read_text())
    assert EDIT[0] in task["card"]["description"][100:]
    task["card"]["description"] = task["card"]["description"].replace(*EDIT)
    path.write_text(json.dumps(task, indent=2) + "\n")


def _refusal(bundle: Path) -> BundleError:
    with pytest.raises(BundleError) as info:
        require_recognized(bundle, weights=False)
    return info.value


def test_a_card_edit_in_a_received_bundle_names_task_json_and_where_the_texts_differ(
    packed, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    received = unpack_bundle(packed, tmp_path / "received")
    _edit_card(received)
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 24), np.float32), np.eye(4)), scan)
    assert main(["predict", "--bundle", str(received), "--input", str(scan), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    headline = err.splitlines()[0]
    assert "refused: configs/task.json changed after the bundle was packed" in headline
    assert "configs/metadata.json no longer matches what the template makes from it" in headline
    assert "unpack the zip again" in headline and "ask the sender" in headline
    assert TRUST_FLAG not in err and "code" not in headline
    # both texts shown around their first difference, the inserted word included
    assert '"...ings and widths 16-128 for CPU training) with' in err
    assert '"...ings and widths 16-128 for CPU-only training) with' in err
    assert "at character 116" in err


def test_a_card_edit_in_an_own_bundle_says_to_build(bundle_copy):
    _edit_card(bundle_copy)
    error = _refusal(bundle_copy)
    headline = str(error).splitlines()[0]
    assert "configs/task.json was edited after the configs were built" in headline
    assert f"run unet-med bundle build {bundle_copy.resolve()}" in headline
    assert TRUST_FLAG not in str(error)
    assert any(p.startswith("configs/metadata.json: description: differs") for p in error.problems)


def test_a_config_edited_by_hand_says_to_edit_the_task_instead(bundle_copy):
    path = bundle_copy / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["description"] = meta["description"].replace(*EDIT)
    path.write_text(json.dumps(meta, indent=4) + "\n")
    task = bundle_copy / "configs" / "task.json"
    os.utime(task, ns=(task.stat().st_atime_ns, path.stat().st_mtime_ns - 10**9))  # the task is the older file
    headline = str(_refusal(bundle_copy)).splitlines()[0]
    assert "configs/metadata.json differs from what the installed unet_med template makes" in headline
    assert "make the change in configs/task.json and run unet-med bundle build" in headline
    assert TRUST_FLAG in headline  # custom code cannot be told apart from a hand edit


def test_short_and_prefix_differences_are_placed_exactly():
    from unet_med.bundle.recognize import _first_difference

    assert _first_difference("abc", "abd") == (
        'differs from the template\'s rendering at character 3: the file has "abc", the template makes "abd"'
    )
    assert "at character 4" in _first_difference("abc", "abcdef")
    long = "x" * 200
    text = _first_difference(long + "A" + long, long + "B" + long)
    assert "at character 201" in text and '"...' + "x" * 30 + "A" + "x" * 29 + '..."' in text
