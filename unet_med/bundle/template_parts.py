"""The pieces every config of the template shares: the network, the preprocessing, the task's own ids, the label
transforms, and the one-line ``$`` plumbing strings (see :mod:`unet_med.bundle.template`)."""

from __future__ import annotations

from typing import Any

__all__ = ["DEVICE", "RANK0_OFF", "handler", "label_transforms", "network_def", "preprocessing", "task_ids"]

#: The device a bundle runs on unless told otherwise.
DEVICE = "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')"
#: Handlers that only the first process of a distributed run keeps.
RANK0_OFF = "$not unet_med.utils.is_rank_zero()"


def network_def(t: dict[str, Any]) -> dict[str, Any]:
    net = t["network"]
    spec: dict[str, Any] = {
        "_target_": "unet_med.networks.UNet",
        "spatial_dims": "@spatial_dims",
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
        "features": "@features",
        "norm": [net["norm"], {"affine": True}] if net["norm"] == "instance" else net["norm"],
    }
    if net["pool_sizes"] is not None:
        spec["pool_sizes"] = net["pool_sizes"]
    if net["dropout"]:
        spec["dropout"] = net["dropout"]
    if net["deep_supervision"]:  # auxiliary heads, used in training only: their weights ship with the model
        spec["deep_supervision"] = True
    return spec


def preprocessing(t: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    pre = t["preprocessing"]
    spec: dict[str, Any] = {
        "_target_": "unet_med.transforms.preprocessing",
        "keys": keys,
        "modality": "@modality",
        "pixdim": "@pixdim",
        "orientation": pre["orientation"],
    }
    if t["modality"] == "mri":
        spec["mri_foreground"] = pre["mri_foreground"]
    if t["modality"] == "ct":
        spec["ct_window"] = "@ct_window"
    return spec


def task_ids(t: dict[str, Any]) -> dict[str, Any]:
    """The ids both standalone configs define (each can be overridden on the command line): the task's shape,
    its preprocessing settings and the network."""
    ids: dict[str, Any] = {
        "spatial_dims": t["spatial_dims"],
        "in_channels": len(t["channels"]),
        "num_classes": len(t["classes"]),
        "class_names": t["classes"],
        "modality": t["modality"],
        "pixdim": t["preprocessing"]["pixdim"],
    }
    if t["modality"] == "ct":
        ids["ct_window"] = t["preprocessing"]["ct_window"]
    ids["patch_size"] = t["patch_size"]
    ids["features"] = t["network"]["features"]
    ids["network_def"] = network_def(t)
    return ids


def label_transforms(t: dict[str, Any]) -> list[dict[str, Any]]:
    labels = t["labels"]
    if labels["kind"] == "values":
        return [
            {
                "_target_": "MapLabelValued",
                "keys": "label",
                "orig_labels": labels["values"],
                "target_labels": labels["map_to"],
            }
        ]
    if labels["kind"] == "instances":
        return [
            {
                "_target_": "unet_med.transforms.InstancesToClassesd",
                "keys": "label",
                "boundary_width": labels.get("boundary_width", 2),
            }
        ]
    return []


def handler(target: str, **kwargs: Any) -> dict[str, Any]:
    return {"_target_": target, **kwargs}
