"""The task bundles (hippocampus MRI, sarcoma CT, BraTS MRI): metadata, network, one training iteration and one
inference each, on synthetic data of the bundle's modality and channel count, written under tmp_path."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigWorkflow

from unet_med.data.synthetic import synthetic_volume

REPO = Path(__file__).resolve().parents[2]

# bundle -> (channels, classes, image intensity mapping, small patch divisible by the bundle's pooling)
TASKS = {
    "hippocampus_mri": (1, 3, lambda x: x * 300.0, [16, 16, 16]),
    "sarcoma_ct": (1, 2, lambda x: x * 400.0 - 200.0, [32, 32, 8]),
    "brats_mri": (2, 5, lambda x: x, [32, 32, 32]),
}


def _write_dataset(root: Path, channels: int, classes: int, to_modality, cases: int = 4) -> None:
    """An MSD-style folder of small LPS, anisotropic synthetic cases (4D images for several channels)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([-1.2, -1.1, 2.0, 1.0])
    affine[:3, 3] = [30.0, 20.0, -10.0]
    for i in range(cases):
        image, label = synthetic_volume((32, 32, 24), num_classes=classes, seed=i)
        image = to_modality(image / max(float(image.max()), 1e-6))
        if channels > 1:
            image = np.stack([image * (1 + 0.3 * c) for c in range(channels)], axis=-1)
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), root / "imagesTr" / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), root / "labelsTr" / f"case_{i}.nii.gz")


def _overrides(tmp: Path, bundle: Path, patch: list[int]) -> dict:
    return {
        "bundle_root": str(bundle),
        "dataset_dir": str(tmp / "data"),
        "datalist_file": None,
        "output_dir": str(tmp / "runs"),
        "ckpt_dir": str(tmp / "models"),
        "patch_size": patch,
        "batch_size": 1,
        "num_samples": 1,
        "max_epochs": 1,
        "val_interval": 1,
        "amp": False,
        "device": "cpu",
        "compile": False,  # compiled training has its own test (tests/engines/test_compiled.py)
        "ensemble": 1,  # one fresh model here; shipped ensembles: tests/bundle/test_recognize.py, tests/inference
    }


@pytest.mark.parametrize("name", sorted(TASKS))
def test_metadata_and_network_verify_offline(name, verify_offline):
    verify_offline(name)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_one_training_iteration_then_inference(name, tmp_path):
    channels, classes, to_modality, patch = TASKS[name]
    bundle = REPO / "bundles" / name
    configs = bundle / "configs"
    _write_dataset(tmp_path / "data", channels, classes, to_modality)
    overrides = _overrides(tmp_path, bundle, patch)
    train = ConfigWorkflow(
        config_file=str(configs / "train.json"),
        meta_file=str(configs / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        run_id="training",
        **overrides,
    )
    train.initialize()
    assert train.parser.get_parsed_content("in_channels") == channels
    assert train.parser.get_parsed_content("num_classes") == classes
    train.run()
    assert train.parser.get_parsed_content("train#trainer").state.iteration >= 1
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert weights["head.weight"].shape[0] == classes

    # an unseen scan as NIfTI and as NRRD (SimpleITK writes the same geometry, LPS on disk)
    scan = tmp_path / "data" / "imagesTr" / "case_0.nii.gz"
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    source = nib.load(scan)
    if channels == 1:
        sitk.WriteImage(sitk.ReadImage(str(scan)), str(unseen / "case_0.nrrd"))
    else:  # one NRRD per channel, named with nnU-Net's channel suffix
        for c in range(channels):
            channel = nib.Nifti1Image(np.asarray(source.dataobj)[..., c], source.affine)
            nib.save(channel, tmp_path / f"channel_{c}.nii.gz")
            sitk.WriteImage(sitk.ReadImage(str(tmp_path / f"channel_{c}.nii.gz")), str(unseen / f"case_0_{c:04d}.nrrd"))
    for path, out in ((scan, tmp_path / "masks"), (unseen, tmp_path / "masks_nrrd")):
        infer = ConfigWorkflow(
            config_file=str(configs / "inference.json"),
            meta_file=str(configs / "metadata.json"),
            logging_file=False,
            workflow_type="infer",
            run_id="inferring",
            **{**overrides, "input": str(path), "output_dir": str(out)},
        )
        infer.initialize()
        infer.run()
        (written,) = list(out.glob("case_0_seg.*"))
        mask = nib.load(written) if written.suffix == ".gz" else _nrrd_as_nifti(written, tmp_path)
        assert mask.shape == source.shape[:3]
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
        assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= set(range(classes))


def _nrrd_as_nifti(path: Path, tmp: Path) -> nib.Nifti1Image:
    """A written NRRD mask read back through SimpleITK as NIfTI (its RAS affine), to compare geometry."""
    out = tmp / f"{path.stem}_as.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(path)), str(out))
    return nib.load(out)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_bundles_refuse_to_train_without_real_data(name, tmp_path):
    configs = REPO / "bundles" / name / "configs"
    with pytest.raises(Exception) as err:
        ConfigWorkflow(
            config_file=str(configs / "train.json"),
            meta_file=str(configs / "metadata.json"),
            logging_file=False,
            workflow_type="train",
            run_id="training",
            bundle_root=str(configs.parent),
            output_dir=str(tmp_path),
        ).initialize()
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    assert any("--dataset_dir" in c for c in chain)
