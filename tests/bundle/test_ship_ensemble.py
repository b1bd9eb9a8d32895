"""``unet-med bundle ensemble``: fold models shipped as float16 members, recognised, and run by predict and
inference.json alike."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from unet_med.bundle.recognize import recognize_bundle
from unet_med.bundle.run import run_bundle
from unet_med.bundle.task import load_task
from unet_med.cli import main
from unet_med.inference import FoldEnsemble, Predictor, load_bundle


@pytest.fixture
def shipped(cv_trained, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(cv_trained, bundle, ignore=shutil.ignore_patterns("tensorboard"))
    assert main(["bundle", "ensemble", str(bundle)]) == 0
    return bundle


def test_ensemble_ships_members_and_is_recognised(shipped):
    assert load_task(shipped)["inference"]["ensemble"] == 2
    members = [shipped / "models" / n for n in ("model.pt", "model_fold1.pt")]
    for k, path in enumerate(members):
        state = torch.load(path, weights_only=True)
        assert all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())
        fold = torch.load(shipped / "runs" / f"fold{k}" / "models" / "final.pt", weights_only=True)
        torch.testing.assert_close(state["head.weight"].float(), fold["head.weight"], atol=1e-3, rtol=1e-3)
    result = recognize_bundle(shipped)
    assert result.ok, result.format()
    assert list(result.member_weights) == ["model_fold1.pt"]


def test_an_unlisted_member_file_is_not_recognised(shipped):
    shutil.copy(shipped / "models" / "model.pt", shipped / "models" / "model_fold2.pt")
    assert any("models/model_fold2.pt" in p for p in recognize_bundle(shipped).problems)


def test_a_missing_member_is_not_recognised(shipped):
    (shipped / "models" / "model_fold1.pt").unlink()
    assert "models/model_fold1.pt: missing" in recognize_bundle(shipped).problems


def test_predict_and_inference_json_run_the_same_ensemble(shipped, tmp_path):
    model = load_bundle(shipped)
    assert isinstance(model.network, FoldEnsemble) and len(model.network.networks) == 2
    scan = next((shipped / ".cache" / "demo3d").rglob("imagesTr/*.nii.gz"))
    result = Predictor(model).predict_case(scan, tmp_path / "predict")
    assert result.ok, result.error
    run_bundle(shipped, "inferring", {"input": str(scan), "output_dir": str(tmp_path / "bundle_run"), "device": "cpu"})
    ours = nib.load(result.outputs[0]).get_fdata()
    theirs = nib.load(next((tmp_path / "bundle_run").glob("*_seg.nii.gz"))).get_fdata()
    assert ours.shape == theirs.shape and np.mean(ours == theirs) > 0.999


def test_ensemble_refuses_members_over_the_size_limit(cv_trained, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(cv_trained, bundle, ignore=shutil.ignore_patterns("tensorboard"))
    before = (bundle / "models" / "model.pt").read_bytes()
    assert main(["bundle", "ensemble", str(bundle), "--max-mb", "0.01"]) == 2
    assert "ship fewer folds" in capsys.readouterr().err
    assert (bundle / "models" / "model.pt").read_bytes() == before
