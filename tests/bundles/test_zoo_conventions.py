"""Every shipped bundle as MONAI's own tools meet it: ``monai.bundle run`` on ``inference.json`` alone, the model
zoo's checks (metadata, ``verify_net_in_out``, ``ckpt_export`` of ``inference.json``), the standard workflow
properties, and the same masks as ``unet-med predict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from unet_med.data.synthetic import synthetic_image_2d, synthetic_volume
from unet_med.inference import Predictor, load_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["brats_mri", "em_membranes", "hippocampus_mri", "nuclei_fluorescence", "sarcoma_ct", "unet"]


def _case(name: str, folder: Path) -> Path:
    """A small synthetic scan of the bundle's modality and channel count, in an LPS geometry for 3D."""
    folder.mkdir(parents=True, exist_ok=True)
    if name in ("em_membranes", "nuclei_fluorescence"):
        image, _ = synthetic_image_2d((96, 80), num_classes=3, seed=1)
        path = folder / "section.png"
        Image.fromarray((255 * image / max(float(image.max()), 1e-6)).astype(np.uint8).T).save(path)
        return path
    image, _ = synthetic_volume((40, 36, 20), num_classes=3, seed=1)
    image = image / max(float(image.max()), 1e-6)
    if name == "sarcoma_ct":
        image = image * 300.0 - 100.0
    elif name == "brats_mri":
        image = np.stack([image, 0.7 * image], axis=-1)
    else:
        image = image * 400.0
    affine = np.diag([-1.1, -1.0, 2.5, 1.0])
    affine[:3, 3] = [20.0, -15.0, 5.0]
    path = folder / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), path)
    return path


def _read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj) if path.name.endswith(".nii.gz") else np.asarray(Image.open(path))


@pytest.mark.parametrize("name", BUNDLES)
def test_inference_json_alone_writes_the_masks_unet_med_predict_writes(name, tmp_path):
    bundle = REPO / "bundles" / name
    case = _case(name, tmp_path / "in")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json"]
    command += ["--input", str(case), "--output_dir", str(tmp_path / "monai")]
    done = subprocess.run(command, cwd=bundle, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = list((tmp_path / "monai").iterdir())

    result = Predictor(load_bundle(bundle)).predict_case(case, tmp_path / "predict")
    assert result.ok, result.error
    assert written.name == result.outputs[0].name
    ours, theirs = _read(result.outputs[0]), _read(written)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(theirs, ours)
    if name not in ("em_membranes", "nuclei_fluorescence"):
        np.testing.assert_allclose(nib.load(written).affine, nib.load(case).affine, atol=1e-5)
    assert not (bundle / "runs" / "predictions").exists() or name == "unet"


def test_inference_json_without_input_names_the_option(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "bundles/unet/configs/inference.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "--input" in done.stderr


@pytest.mark.parametrize("name", BUNDLES)
def test_model_zoo_checks_on_inference_json(name, tmp_path, shared_dir):
    """What the zoo's ``ci/verify_bundle.py`` runs, with only the schema path pointed at ../shared/schemas."""
    schema = shared_dir / "schemas" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip(f"schema not found: {schema}")
    bundle = REPO / "bundles" / name
    meta = bundle / "configs" / "metadata.json"
    for required in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        assert (bundle / required).is_file(), required
    verify_metadata(meta_file=str(meta), filepath=str(schema))
    inference = str(bundle / "configs" / "inference.json")
    verify_net_in_out(net_id="network_def", meta_file=str(meta), config_file=inference, bundle_root=str(bundle))
    out = tmp_path / "verify_model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(out),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(meta),
        config_file=inference,
        bundle_root=str(bundle),
    )
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    assert "verify_model/extra/inference.json" in names and "verify_model/extra/metadata.json" in names
    torch.jit.load(str(out))
    packages = json.loads(meta.read_text())["required_packages_version"]
    assert all(v[0].isdigit() and not set(v) & set("<>=~!*,") for v in packages.values()), packages


@pytest.mark.parametrize("name", BUNDLES)
def test_workflow_properties_are_complete(name, tmp_path):
    configs = REPO / "bundles" / name / "configs"
    infer = ConfigWorkflow(
        config_file=str(configs / "inference.json"), workflow_type="infer", logging_file=str(configs / "logging.conf")
    )
    infer.initialize()
    assert infer.check_properties() == []
    assert infer.bundle_root == str(configs.parent)
    for files in (["train.json"], ["train.json", "evaluate.json"], ["train.json", "multi_gpu_train.json"]):
        train = ConfigWorkflow(
            config_file=[str(configs / f) for f in files],
            workflow_type="train",
            logging_file=False,
            output_dir=str(tmp_path),
        )
        fake = [{"image": "never_read.nii.gz", "label": "never_read.nii.gz"}]  # the properties, not the data
        train.parser["datalist"] = {"training": fake, "validation": fake}
        train.parser["initialize"] = train.parser["initialize"][:1]
        for dataset in ("train#dataset", "validate#dataset"):
            train.parser[f"{dataset}#cache_rate"] = 0.0
        if "multi_gpu_train.json" in files:  # no process group in a unit test
            train.parser["initialize"] = []
            train.parser["network"] = "$@network_def"
            for sampler in ("train#sampler", "validate#sampler"):
                train.parser[f"{sampler}#num_replicas"] = 1
                train.parser[f"{sampler}#rank"] = 0
        train.initialize()
        assert train.check_properties() == [], files
        assert train.bundle_root == str(configs.parent)


def test_bundle_root_never_falls_back_to_the_working_directory(tmp_path, monkeypatch):
    from monai.bundle import ConfigParser

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["python"])
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "unet" / "configs" / "inference.json"))
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("output_dir")
    assert "bundle_root" in str(info.value.__cause__)
    assert list(tmp_path.iterdir()) == []
