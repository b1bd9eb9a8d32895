"""The 2D microscopy bundles (EM membranes, fluorescent nuclei): metadata, network, one training iteration, the
evaluation report and inference on PNG, 8/16-bit TIFF and stacks, on synthetic images written under tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from PIL import Image

from unet_med.inference import Predictor, load_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("em_membranes", "nuclei_fluorescence")
SHAPE = (80, 96)  # rows, columns: not square, not a multiple of the patch


def _nuclei(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with bright disks, some touching, and its uint16 instance map."""
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    instances = np.zeros(SHAPE, np.uint16)
    for k in range(1, 9):
        r, c, radius = rng.integers(8, SHAPE[0] - 8), rng.integers(8, SHAPE[1] - 8), rng.integers(4, 8)
        instances[((rows - r) ** 2 + (cols - c) ** 2 <= radius**2) & (instances == 0)] = k
    image = 20 + 180 * (instances > 0) + rng.normal(0, 8, SHAPE)
    return np.clip(image, 0, 255).astype(np.uint8), instances


def _membranes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bright cells separated by dark 2-pixel walls; the ISBI label convention (255 interior, 0 membrane)."""
    label = np.full(SHAPE, 255, np.uint8)
    for r in rng.choice(np.arange(6, SHAPE[0] - 6), 4, replace=False):
        label[r : r + 2] = 0
    for c in rng.choice(np.arange(6, SHAPE[1] - 6), 4, replace=False):
        label[:, c : c + 2] = 0
    image = np.where(label == 0, 40.0, 190.0) + rng.normal(0, 10, SHAPE)
    return np.clip(image, 0, 255).astype(np.uint8), label


def _write_dataset(root: Path, name: str, cases: int = 4) -> list[np.ndarray]:
    """PNG images for EM; 16-bit TIFF images for nuclei (the bit depth the intensity scaling must absorb)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in range(cases):
        if name == "em_membranes":
            image, label = _membranes(rng)
            Image.fromarray(image).save(root / "images" / f"s{i}.png")
        else:
            image, label = _nuclei(rng)
            tifffile.imwrite(root / "images" / f"s{i}.tif", image.astype(np.uint16) * 257)
        Image.fromarray(label).save(root / "labels" / f"s{i}.png")
        images.append(image)
    return images


def _overrides(tmp: Path, bundle: Path) -> dict:
    return {
        "bundle_root": str(bundle),
        "dataset_dir": str(tmp / "data"),
        "datalist_file": None,
        "output_dir": str(tmp / "runs"),
        "ckpt_dir": str(tmp / "models"),
        "patch_size": [64, 64],
        "features": [8, 16, 32, 64, 128],
        "batch_size": 2,
        "num_samples": 1,
        "max_epochs": 1,
        "val_interval": 1,
        "device": "cpu",
        "compile": False,  # compiled training has its own test (tests/engines/test_compiled.py)
        "ensemble": 1,  # one fresh model here; shipped ensembles: tests/bundle/test_recognize.py, tests/inference
    }


def _workflow(configs: Path, overlay: str | None, kind: str, run_id: str, overrides: dict) -> ConfigWorkflow:
    """An initialised MONAI workflow of ``train.json`` (plus an overlay), or of the standalone ``inference.json``,
    with the test's overrides."""
    files = [str(configs / "train.json")] + ([str(configs / overlay)] if overlay else [])
    if overlay == "inference.json":
        files = [str(configs / overlay)]
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(configs / "metadata.json"),
        logging_file=False,
        workflow_type=kind,
        run_id=run_id,
        **overrides,
    )
    workflow.initialize()
    return workflow


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_and_network_verify_offline(name, verify_offline):
    meta = verify_offline(name)
    assert len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2


@pytest.mark.parametrize("name", BUNDLES)
def test_datalist_holds_out_a_fixed_split(name):
    datalist = json.loads((REPO / "bundles" / name / "configs" / "datalist.json").read_text())
    train = {d["image"] for d in datalist["training"]}
    val = {d["image"] for d in datalist["validation"]}
    assert train and val and not train & val
    if name == "em_membranes":  # the last five sections
        assert sorted(val) == [f"./image/{i}.png" for i in range(25, 30)]


@pytest.mark.parametrize("name", BUNDLES)
def test_one_training_iteration_evaluation_and_inference(name, tmp_path):
    bundle = REPO / "bundles" / name
    configs = bundle / "configs"
    images = _write_dataset(tmp_path / "data", name)
    overrides = _overrides(tmp_path, bundle)
    train = _workflow(configs, None, "train", "training", overrides)
    assert train.parser.get_parsed_content("spatial_dims") == 2
    train.run()
    assert train.parser.get_parsed_content("train#trainer").state.iteration >= 1
    classes = train.parser.get_parsed_content("num_classes")
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert weights["head.weight"].shape[0] == classes

    _workflow(configs, "evaluate.json", "eval", "evaluating", overrides).run()
    summary = json.loads((tmp_path / "runs" / "eval" / "summary.json").read_text())
    expected = {"pixel_error", "rand_error", "membrane_dice"} if name == "em_membranes" else {"dice", "f1"}
    assert expected <= set(summary["metrics"])
    assert summary["num_cases"] >= 1
    assert list((tmp_path / "runs" / "eval").glob("overlay_*.png"))

    # MONAI's own inferring workflow on a PNG
    png = tmp_path / "unseen.png"
    Image.fromarray(images[0]).save(png)
    infer_overrides = {**overrides, "input": str(png), "output_dir": str(tmp_path / "masks")}
    _workflow(configs, "inference.json", "infer", "inferring", infer_overrides).run()
    (written,) = list((tmp_path / "masks").glob("unseen_*.png"))
    assert np.asarray(Image.open(written)).shape == SHAPE

    # unet-med predict: PNG, 16-bit TIFF, a multi-page TIFF and a NIfTI stack segmented section by section
    model = load_bundle(
        bundle, model_file=tmp_path / "models" / "model.pt", overrides={"features": [8, 16, 32, 64, 128], "ensemble": 1}
    )
    predictor = Predictor(model, roi_size=(64, 64))
    stack = np.stack(images[:3])  # (sections, rows, columns)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "deep.tif", images[0].astype(np.uint16) * 257)
    affine = np.diag([0.004, 0.004, 0.05, 1.0])
    nib.save(nib.Nifti1Image(np.transpose(stack, (2, 1, 0)), affine), tmp_path / "stack.nii.gz")
    out = tmp_path / "predict"
    results = {
        p: predictor.predict_case(tmp_path / p, out) for p in ("unseen.png", "deep.tif", "stack.tif", "stack.nii.gz")
    }
    assert all(r.ok for r in results.values()), [r.error for r in results.values()]
    single = np.asarray(Image.open(out / "unseen_seg.png"))
    assert single.shape == SHAPE
    np.testing.assert_array_equal(tifffile.imread(out / "deep_seg.tif"), single)  # 8 or 16 bits: the same mask
    pages = tifffile.imread(out / "stack_seg.tif")
    assert pages.shape == stack.shape
    np.testing.assert_array_equal(pages[0], single)
    volume = nib.load(out / "stack_seg.nii.gz")
    np.testing.assert_allclose(volume.affine, affine)
    np.testing.assert_array_equal(np.transpose(np.asarray(volume.dataobj), (2, 1, 0)), pages)
    if name == "em_membranes":
        assert set(np.unique(single).tolist()) <= {0, 1}


def test_border_weighted_training_runs_through_monais_trainer(tmp_path):
    """``training.loss: border_weighted_ce``: the label reaches the loss with its weight map as a second channel,
    and a few epochs on synthetic sections lower the weighted loss."""
    from unet_med.bundle.build import build_bundle

    bundle = tmp_path / "em_weighted"
    shutil.copytree(REPO / "bundles" / "em_membranes" / "configs", bundle / "configs")
    task = json.loads((bundle / "configs" / "task.json").read_text())
    task["training"] |= {"loss": "border_weighted_ce", "border_weights": {"border_class": "membrane"}}
    task["inference"] = {"ensemble": 1}
    (bundle / "configs" / "task.json").write_text(json.dumps(task))
    build_bundle(bundle)
    _write_dataset(tmp_path / "data", "em_membranes", cases=6)
    overrides = {**_overrides(tmp_path, bundle), "max_epochs": 4, "val_interval": 4, "learning_rate": 0.01}
    train = _workflow(bundle / "configs", None, "train", "training", overrides)
    losses: list[float] = []
    trainer = train.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.metrics["train_loss"]))
    train.run()
    (first,) = trainer.state.output[:1]
    assert first["label"].shape == (2, 64, 64)
    assert float(first["label"][1].max()) > 1.0 and set(torch.unique(first["label"][0]).tolist()) <= {0.0, 1.0}
    assert len(losses) == 4 and all(np.isfinite(losses)) and losses[-1] < losses[0]
