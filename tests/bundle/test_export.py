"""TorchScript export: the archive laid out as ``monai.bundle ckpt_export`` lays it out, so MONAI Deploy's
``MonaiBundleInferenceOperator`` reads the metadata and the inference config from the model file alone."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from unet_med.bundle.export import export_torchscript

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unet"


@pytest.fixture(scope="module")
def weights() -> Path:
    path = BUNDLE / "models" / "model.pt"
    if not path.is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    return path


# "unet-0.1.0.ts": a stem with dots, which the operator (os.path.splitext) and torch.jit.save cut the same way.
@pytest.mark.parametrize("name", ["model.ts", "unet-0.1.0.ts"])
def test_extra_files_lie_under_the_file_stem(tmp_path, weights, name):
    out = export_torchscript(BUNDLE, tmp_path / name, weights=weights)
    assert out == tmp_path / name
    root = os.path.splitext(name)[0]  # the folder MonaiBundleInferenceOperator reads "<root>/extra/<config>.json" from

    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert all(n.startswith(f"{root}/") for n in names), sorted({n.split("/")[0] for n in names})
        meta = json.loads(zf.read(f"{root}/extra/metadata.json"))
        inference = json.loads(zf.read(f"{root}/extra/inference.json"))
    bundle_meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta == bundle_meta
    expected = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    assert inference == {**expected, "bundle_root": "."}  # no bundle folder inside a model file
    assert "network_data_format" in meta

    extra = {"metadata.json": "", "inference.json": ""}
    torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["metadata.json"]) == bundle_meta
    assert json.loads(extra["inference.json"]) == inference
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "temporary folder left behind"


def test_reexport_replaces_the_file(tmp_path, weights):
    out = tmp_path / "model.ts"
    out.write_bytes(b"stale")
    export_torchscript(BUNDLE, out, weights=weights)
    with zipfile.ZipFile(out) as zf:
        assert "model/extra/metadata.json" in zf.namelist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ts"]
