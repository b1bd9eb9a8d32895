"""``unet-med bundle cv``: every fold trained under runs/fold{k}/, a killed fold resumed, a finished one skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unet_med.bundle.cv import final_weights, fold_state, run_cv
from unet_med.bundle.paths import run_dir, weights_dir


def _epoch(path) -> int:
    trainer = torch.load(path, weights_only=True)["trainer"]
    return int(trainer["iteration"]) // int(trainer["epoch_length"])


def test_cv_trains_each_fold_into_its_own_folder(cv_trained):
    root = str(cv_trained)
    splits = [json.loads((cv_trained / "runs" / f"fold{k}" / "datalist.json").read_text()) for k in (0, 1)]
    validation = [{c["image"] for c in s["validation"]} for s in splits]
    assert not validation[0] & validation[1] and len(validation[0] | validation[1]) == 4
    for k, split in enumerate(splits):
        assert split["fold"] == k and split["num_folds"] == 2
        assert {c["image"] for c in split["training"]} == validation[1 - k]
        assert (cv_trained / "runs" / f"fold{k}" / "models" / "model.pt").is_file()
        assert _epoch(f"{weights_dir(root, k)}/last.pt") == 2
        # the last epoch's weights, not the best-validation ones, are what the report scores and an ensemble ships
        final = torch.load(final_weights(cv_trained, k), weights_only=True)
        last = torch.load(f"{weights_dir(root, k)}/last.pt", weights_only=True)["model"]
        assert final.keys() == last.keys() and all(torch.equal(final[n], last[n]) for n in final)
        assert fold_state(cv_trained, k) == "done"
    assert not (cv_trained / "models" / "last.pt").exists(), "a fold must not write into the shipped models/"


def test_cv_resumed_the_killed_fold(cv_trained):
    marker = [json.loads((cv_trained / "runs" / f"fold{k}" / "fold.json").read_text()) for k in (0, 1)]
    assert marker[0]["resumed"] is True and marker[1]["resumed"] is False


def test_cv_skips_finished_folds(cv_trained):
    assert run_cv(cv_trained, overrides={"device": "cpu"}) == []


def test_cv_refuses_what_each_fold_sets_itself(cv_trained):
    with pytest.raises(ValueError, match="set per fold"):
        run_cv(cv_trained, overrides={"ckpt_dir": "/tmp/x"})
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        run_cv(cv_trained, folds=[2])


def test_fold_paths():
    assert run_dir("/b") == "/b/runs" and weights_dir("/b") == "/b/runs/models"
    assert run_dir("/b", 3) == "/b/runs/fold3" and weights_dir("/b", 3) == "/b/runs/fold3/models"


def test_final_weights_of_an_unfinished_fold_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="has not finished"):
        final_weights(tmp_path, 0)


def test_final_weights_of_a_fold_trained_on_its_own(cv_trained, tmp_path):
    """A fold run by ``bundle run --fold k`` (no fold.json) counts as finished once its trainer ran every epoch."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(cv_trained, bundle)
    models = Path(weights_dir(str(bundle), 0))
    (Path(run_dir(str(bundle), 0)) / "fold.json").unlink()
    (models / "final.pt").unlink()
    last = torch.load(models / "last.pt", weights_only=True)
    final = torch.load(final_weights(bundle, 0), weights_only=True)
    assert torch.equal(final["head.weight"], last["model"]["head.weight"])

    (models / "final.pt").unlink()
    last["trainer"]["iteration"] = last["trainer"]["epoch_length"]  # stopped after its first epoch
    torch.save(last, models / "last.pt")
    with pytest.raises(FileNotFoundError, match="has not finished"):
        final_weights(bundle, 0)
