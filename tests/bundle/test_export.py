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


def test_onnx_export_prints_no_torchvision_or_future_warning(tmp_path):
    """In a fresh process, as ``unet-med bundle verify`` runs it: PyTorch prints its torchvision notices once per
    process, on the first export, and ``torch.export`` a LeafSpec FutureWarning."""
    import shutil
    import subprocess
    import sys

    from unet_med.bundle.build import build_bundle
    from unet_med.networks import UNet

    pytest.importorskip("onnxscript")
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    task = json.loads((bundle / "configs" / "task.json").read_text())
    task["network"]["features"], task["patch_size"] = [4, 8, 16, 32], [16, 16, 16]
    (bundle / "configs" / "task.json").write_text(json.dumps(task))
    build_bundle(bundle)
    (bundle / "models").mkdir()
    net = UNet(3, 1, 3, features=[4, 8, 16, 32], norm=["instance", {"affine": True}])
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    code = "import sys; from unet_med.bundle.export import export_onnx; export_onnx(sys.argv[1], sys.argv[2])"
    out = subprocess.run(
        [sys.executable, "-W", "default", "-c", code, str(bundle), str(tmp_path / "model.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "model.onnx").is_file()
    assert "torchvision" not in out.stderr and "FutureWarning" not in out.stderr, out.stderr[-2000:]
