"""``inference.json`` (standalone, the ``unet-med predict`` components) and ``metadata.json`` (card texts, the
network's data format and exact pins), from a task with its defaults filled in (see :mod:`unet_med.bundle.template`)."""

from __future__ import annotations

from typing import Any

from unet_med import __version__
from unet_med.bundle.template_parts import DEVICE, preprocessing, task_ids

__all__ = ["PINS", "SCHEMA_URL", "inference_config", "metadata"]

#: The MONAI bundle metadata schema the metadata follows.
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
#: Exact versions the bundles are made and tested with (the metadata's pins).
PINS: dict[str, Any] = {
    "monai": "1.6.1",
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "packages": {
        "unet-med": __version__,
        "nibabel": "5.4.2",
        "pytorch-ignite": "0.5.5",
        "tensorboard": "2.21.0",
        "matplotlib": "3.11.2",
        "SimpleITK": "2.5.7",
        "scipy": "1.17.1",
        "scikit-image": "0.26.0",
        "pillow": "13.0.0",
        "tifffile": "2026.3.3",
        "pydicom": "3.0.2",
        "highdicom": "0.28.2",
    },
}
_METADATA_MODALITY = {"mri": "MR", "ct": "CT"}


def inference_config(t: dict[str, Any]) -> dict[str, Any]:
    """``inference.json`` for a task with defaults filled in: standalone, the ``unet-med predict`` components."""
    post = t["postprocessing"]
    labels: dict[str, Any] = {"_target_": "unet_med.inference.ScoresToLabelsd", "keys": "pred"}
    if post["keep_largest_component"]:
        labels["keep_largest"] = post["keep_largest_component"]
    if post["instances_min_size"] is not None:
        labels["instances_min_size"] = post["instances_min_size"]
    members = t["inference"]["ensemble"]
    labels["probabilities"] = "@mirror" if members == 1 else True  # an ensemble blends probabilities
    loader = {
        "_target_": "CheckpointLoader",
        "load_path": "@model_file",
        "load_dict": {"model": "@network"},
        "map_location": "@device",
    }
    ensemble: dict[str, Any] = {}
    network = "$@network_def.to(@device)"
    if members > 1:
        ensemble = {"ensemble": members}
        network = "$unet_med.inference.load_ensemble(@network_def, @model_file, @ensemble, @device)"
    return {
        "imports": ["$import torch", "$import monai", "$import unet_med"],
        "bundle_root": "$unet_med.bundle.locate_bundle_root()",
        "ckpt_dir": "$@bundle_root + '/models'",
        "model_file": "$@ckpt_dir + '/model.pt'",
        **ensemble,
        "output_dir": "$@bundle_root + '/runs/predictions'",
        "dataset_dir": None,
        "input": None,
        "device": DEVICE,
        "precision": "auto",
        "mirror": False,
        "overlap": 0.5,
        "sw_batch_size": 4,
        "num_workers": 0,
        "output_format": "nifti",
        **task_ids(t),
        "class_codes": t.get("class_codes", {}),
        "network": network,
        "preprocessing": preprocessing(t, ["image"]),
        "datalist": {
            "_target_": "unet_med.data.inference_datalist",
            "input": "@input",
            "dataset_dir": "@dataset_dir",
            "num_channels": "@in_channels",
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": "@num_workers",
        },
        "inferer": {
            "_target_": "unet_med.inference.ScanInferer",
            "roi_size": "@patch_size",
            "overlap": "@overlap",
            "sw_batch_size": "@sw_batch_size",
            "precision": "@precision",
            "mirror": "@mirror",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                labels,
                {"_target_": "unet_med.inference.InvertToInputd", "keys": "pred", "transform": "@preprocessing"},
                {
                    "_target_": "unet_med.inference.SaveImageLikeInputd",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_format": "@output_format",
                    "class_names": "@class_names",
                    "class_codes": "@class_codes",
                    "algorithm": [t["card"]["name"], t["card"]["version"]],
                },
            ],
        },
        "handlers": [
            *([loader] if members == 1 else []),  # an ensemble is loaded when it is built
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$unet_med.data.require_cases(@datalist)", "$@evaluator.run()"],
        "inferring": "@run",
    }


def _divisors(t: dict[str, Any]) -> list[int]:
    pools = t["network"]["pool_sizes"]
    dims = t["spatial_dims"]
    if pools is None:
        return [2 ** (len(t["network"]["features"]) - 1)] * dims
    out = [1] * dims
    for stage in pools:
        out = [o * p for o, p in zip(out, stage)]
    return out


def metadata(t: dict[str, Any]) -> dict[str, Any]:
    """``metadata.json``: the card texts from the task, the network's data format, and exact pins."""
    card = t["card"]
    micro = t["modality"] == "microscopy"
    # any multiple of twice the pooling factor: the bottleneck keeps >= 2 voxels per axis, which instance
    # norm needs (MONAI's verify_net_in_out tries n=1)
    shape = [f"{2 * d}*n" for d in _divisors(t)]
    imaging = card.get("imaging_modality", _METADATA_MODALITY.get(t["modality"], "microscopy"))

    def fmt(num_channels: int, channel_def: dict[str, str], segmentation: bool) -> dict[str, Any]:
        return {
            "type": "image",
            "format": "segmentation" if segmentation else "magnitude",
            **({} if segmentation else {"modality": imaging}),
            "num_channels": num_channels,
            "spatial_shape": shape,
            "dtype": "float32",
            "value_range": [0, 1] if micro and not segmentation else [],
            "is_patch_data": True,
            "channel_def": channel_def,
        }

    return {
        "schema": SCHEMA_URL,
        "version": card["version"],
        "changelog": card["changelog"],
        "monai_version": PINS["monai"],
        "pytorch_version": PINS["torch"],
        "numpy_version": PINS["numpy"],
        "required_packages_version": dict(PINS["packages"]),
        "supported_apps": {},
        "name": card["name"],
        "task": card["task"],
        "description": card["description"],
        "authors": card.get("authors", "unet_med developers"),
        "copyright": card.get("copyright", "Copyright (c) unet_med developers"),
        "data_source": card.get("data_source", ""),
        "data_type": "png" if micro else "nibabel",
        "image_classes": card.get("image_classes", ""),
        "label_classes": card.get("label_classes", ""),
        "pred_classes": card.get("pred_classes", ""),
        "eval_metrics": card.get("eval_metrics", {}),
        "intended_use": card.get("intended_use", "Research and template; not for clinical use."),
        "references": card.get("references", []),
        "class_codes": t.get("class_codes", {}),
        "network_data_format": {
            "inputs": {"image": fmt(len(t["channels"]), {str(i): c for i, c in enumerate(t["channels"])}, False)},
            "outputs": {"pred": fmt(len(t["classes"]), {str(i): c for i, c in enumerate(t["classes"])}, True)},
        },
    }
