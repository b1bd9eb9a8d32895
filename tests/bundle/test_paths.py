"""Finding a bundle's root whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet_med.bundle import evaluated_weights, locate_bundle_root, weights_dir

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unet"


@pytest.mark.parametrize(
    "argv",
    [
        ["m", "run", "training", "--config_file", str(BUNDLE / "configs" / "train.json")],
        ["m", "run", f"--config_file={BUNDLE / 'configs' / 'train.json'}"],
        ["m", "run", "--config_file", f"['{BUNDLE / 'configs' / 'train.json'}','{BUNDLE / 'configs' / 'x.json'}']"],
        ["m", "run", "--config_file", f"{BUNDLE / 'configs' / 'train.json'},{BUNDLE / 'configs' / 'x.json'}"],
    ],
)
def test_from_config_file_argument(argv):
    assert locate_bundle_root(argv=argv) == str(BUNDLE)


def test_relative_config_file_resolves_against_cwd(monkeypatch):
    monkeypatch.chdir(BUNDLE)
    assert locate_bundle_root(argv=["m", "run", "--config_file", "configs/train.json"]) == str(BUNDLE)
    monkeypatch.chdir(BUNDLE.parent.parent)
    assert locate_bundle_root(argv=["m", "run", "--config_file", "bundles/unet/configs/train.json"]) == str(BUNDLE)


def test_no_fallback_to_the_working_directory(monkeypatch, tmp_path):
    for cwd in (BUNDLE, tmp_path):  # not even a bundle folder: only the config file being run decides
        monkeypatch.chdir(cwd)
        with pytest.raises(ValueError, match="bundle_root"):
            locate_bundle_root(argv=["pytest"])


def test_from_the_config_workflow_being_run(monkeypatch, tmp_path):
    """MONAI FL's MonaiAlgo and create_workflow build a ConfigWorkflow; its config folder decides, not argv."""
    from monai.bundle import ConfigWorkflow

    monkeypatch.chdir(tmp_path)
    workflow = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"), workflow_type="infer", logging_file=False
    )
    workflow.initialize()
    assert workflow.bundle_root == str(BUNDLE)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_takes_the_run_s_weights_when_there_are_any_else_the_shipped_ones(tmp_path):
    run = Path(weights_dir(str(tmp_path)))
    assert run == tmp_path / "runs" / "models"  # a run never writes into the bundle's own models/
    assert evaluated_weights(str(tmp_path), str(run)) == str(tmp_path / "models" / "model.pt")
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"weights")
    assert evaluated_weights(str(tmp_path), str(run)) == str(run / "model.pt")
