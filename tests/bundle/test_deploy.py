"""MONAI Deploy App SDK's ``MonaiBundleInferenceOperator`` on our TorchScript export: it parses the embedded
``inference.json`` and its pre-process / predict / post-process steps give the mask ``unet-med predict`` gives
(to bf16 rounding at class borders).

The SDK (``pip install monai-deploy-app-sdk pydicom highdicom``; it brings Holoscan, ~600 MB) is not a project
dependency: these tests skip without it. The operator's steps are driven directly, without running Holoscan.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from unet_med.bundle.export import export_torchscript
from unet_med.inference import Predictor, load_bundle

operator_module = pytest.importorskip(
    "monai.deploy.operators.monai_bundle_inference_operator", reason="MONAI Deploy App SDK not installed"
)

REPO = Path(__file__).resolve().parents[2]


class _Input:
    def __init__(self, values: dict) -> None:
        self.values = values

    def receive(self, name: str):
        return self.values[name]


@pytest.mark.parametrize("name", ["unet", "hippocampus_mri"])
def test_deploy_operator_runs_our_export(name, tmp_path):
    from monai.data.meta_tensor import MetaTensor
    from monai.deploy.core import AppContext, Fragment, Image, IOType
    from monai.utils import convert_to_dst_type, ensure_tuple

    bundle = REPO / "bundles" / name
    ts = export_torchscript(bundle, tmp_path / "model.ts")
    assert "model/extra/inference.json" in zipfile.ZipFile(ts).namelist()
    op = operator_module.MonaiBundleInferenceOperator(
        Fragment(),
        app_context=AppContext({"model": str(ts)}),
        input_mapping=[operator_module.IOMapping("image", Image, IOType.IN_MEMORY)],
        output_mapping=[operator_module.IOMapping("pred", Image, IOType.IN_MEMORY)],
        bundle_path=ts,
    )
    assert op._init_completed
    assert operator_module.is_map_compose(op._preproc) and operator_module.is_map_compose(op._postproc)
    assert type(op._inferer).__name__ == "ScanInferer"

    rng = np.random.default_rng(0)
    volume = (rng.random((40, 36, 24)) * 400).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "scan.nii.gz")
    op._model_network = op.app_context.models.get("")
    value, meta = op._receive_input("image", _Input({"image": volume}), None)
    value = MetaTensor.ensure_torch_and_prune_meta(convert_to_dst_type(value, dst=value)[0], meta or {})
    inputs = op.pre_process({"image": value})
    first = inputs["image"]
    with torch.no_grad():
        scores = op.predict(data=inputs.pop("image")[None].to(op._device))
    inputs["image"] = first
    post = op.post_process(ensure_tuple(scores)[0], preprocessed_inputs=inputs)
    mask = np.asarray(post["pred"])[0]

    result = Predictor(load_bundle(bundle)).predict_case(tmp_path / "scan.nii.gz", tmp_path / "out")
    assert result.ok, result.error
    expected = np.asarray(nib.load(result.outputs[0]).dataobj)
    assert mask.shape == expected.shape == volume.shape
    # the operator runs the scripted network (no fast CPU layers) under the same bf16 autocast: a few voxels at
    # class borders may differ
    assert np.mean(mask == expected) > 0.99
    assert not list(tmp_path.glob("runs")), "the operator drops the bundle's writer"
