"""Finding a bundle's root whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet_med.bundle import locate_bundle_root

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


def test_fallbacks(monkeypatch, tmp_path):
    monkeypatch.chdir(BUNDLE)
    assert locate_bundle_root(argv=["pytest"]) == str(BUNDLE)  # cwd holds configs/metadata.json
    monkeypatch.chdir(tmp_path)
    assert locate_bundle_root(default=BUNDLE, argv=["pytest"]) == str(BUNDLE)
    assert locate_bundle_root(argv=["pytest"]) == str(tmp_path)
