"""``train.json`` and its overlays ``evaluate.json`` and ``multi_gpu_train.json``, from a task with its defaults
filled in (see :mod:`unet_med.bundle.template`)."""

from __future__ import annotations

from typing import Any

from unet_med.bundle.template_parts import (
    DEVICE,
    RANK0_OFF,
    handler,
    label_transforms,
    preprocessing,
    task_ids,
)

__all__ = ["evaluate_config", "multi_gpu_config", "train_config"]


#: What a checkpoint records as the task it was trained for (resuming refuses another, see ResumableCheckpoint).
_TASK_RECORD = {
    "spatial_dims": "@spatial_dims",
    "in_channels": "@in_channels",
    "class_names": "@class_names",
    "modality": "@modality",
    "pixdim": "@pixdim",
}


def _datalist(t: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "_target_": "unet_med.data.prepare_datalist",
        "dataset_dir": "@dataset_dir",
        "datalist_file": "@datalist_file",
        "num_classes": "@num_classes",
        "in_channels": "@in_channels",
        "spatial_dims": "@spatial_dims",
        "cache_dir": "@cache_dir",
        "seed": "@seed",
        "fold": "@fold",
        "num_folds": "@num_folds",
        "save_to": "$@output_dir + '/datalist.json'",
        "modality": "@modality",
        "class_names": "@class_names",
        "allow_task_mismatch": "@allow_task_mismatch",
    }
    if t["training"]["fold_blocks"]:
        spec["fold_blocks"] = True
    if t["training"]["demo"]:
        spec["demo"] = "@demo"
    else:
        spec["allow_demo"] = False
    labels = t["labels"]
    if labels["kind"] == "values":
        spec["label_values"] = labels["values"]
    elif labels["kind"] == "instances":
        spec["label_values"] = "instances"
    return spec


def _validation_postprocessing(t: dict[str, Any]) -> list[dict[str, Any]]:
    report = t["evaluation"]["report"]
    steps: list[dict[str, Any]] = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]
    if report == "regions":
        regions = [r["labels"] for r in t["evaluation"]["regions"]]
        steps += [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "unet_med.transforms.LabelToRegionsd", "keys": ["pred", "label"], "regions": regions},
        ]
        return steps
    steps += [
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True, "to_onehot": "@num_classes"},
        {"_target_": "AsDiscreted", "keys": "label", "to_onehot": "@num_classes"},
    ]
    keep = t["postprocessing"]["keep_largest_component"]
    if keep:
        steps.append(
            {"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": keep, "is_onehot": True}
        )
    return steps


def _loss(t: dict[str, Any]) -> dict[str, Any]:
    if t["training"]["loss"] == "border_weighted_ce":
        # the U-Net paper's loss: the label carries the weight map as its second channel (see _augmentation)
        return {"_target_": "unet_med.losses.PixelWeightedCrossEntropyLoss"}
    spec: dict[str, Any] = {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True}
    if t["training"]["loss"] == "ce":
        spec.update({"lambda_dice": 0.0, "lambda_ce": 1.0})
    if t["network"]["deep_supervision"]:
        # the network returns [full, half, quarter, ...] logits in training; the label is resized to each
        # (nearest) and the losses weighted 1, 1/2, 1/4, ... (floor 1/16)
        return {"_target_": "DeepSupervisionLoss", "loss": spec, "weight_mode": "exp"}
    return spec


def _augmentation(t: dict[str, Any]) -> dict[str, Any]:
    if t["training"]["augmentation"] == "microscopy":
        target = "unet_med.transforms.microscopy_augmentation"
    elif t["training"]["augmentation"] == "volume_strong":
        target = "unet_med.transforms.strong_augmentation"
    else:
        target = "unet_med.transforms.train_augmentation"
    spec: dict[str, Any] = {
        "_target_": target,
        "patch_size": "@patch_size",
        "num_classes": "@num_classes",
        "num_samples": "@num_samples",
    }
    if t["training"]["loss"] == "border_weighted_ce":
        weights = t["training"]["border_weights"]
        spec["border_weights"] = {
            "border_class": t["classes"].index(weights["border_class"]),
            "w0": weights["w0"],
            "sigma": weights["sigma"],
            "keep_class_total": weights["keep_class_total"],
        }
    return spec


def _lr_schedule(tr: dict[str, Any]) -> dict[str, Any]:
    """The learning-rate schedule: cosine decay per epoch, or per iteration after a linear warm-up."""
    if tr["lr_schedule"] == "cosine":
        return {
            "lr_scheduler": {
                "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
                "optimizer": "@optimizer",
                "T_max": "@max_epochs",
                "eta_min": 1e-05,
            }
        }
    return {
        "warmup_epochs": tr["warmup_epochs"],
        "lr_scheduler": {
            "_target_": "monai.optimizers.WarmupCosineSchedule",
            "optimizer": "@optimizer",
            "warmup_steps": "$int(@warmup_epochs * len(@train#dataloader))",
            "t_total": "$@max_epochs * len(@train#dataloader)",
            "end_lr": 1e-05,
            "warmup_multiplier": 0.01,
        },
    }


def train_config(t: dict[str, Any]) -> dict[str, Any]:
    """``train.json`` for a task with defaults filled in (:func:`with_defaults`)."""
    tr = t["training"]
    labels = label_transforms(t)
    train_chain = "$@preprocessing.transforms + @label_transforms.transforms + @train#augmentation.transforms"
    val_chain = "$@preprocessing.transforms + @label_transforms.transforms"
    metric_from = "$monai.handlers.from_engine(['pred', 'label'])"
    loss_from = "$monai.handlers.from_engine(['loss'], first=True)"
    return {
        "imports": [
            "$import operator",
            "$import torch",
            "$import monai",
            "$import unet_med",
        ],
        "bundle_root": "$unet_med.bundle.locate_bundle_root()",
        "output_dir": "$unet_med.bundle.run_dir(@bundle_root, @fold)",
        "ckpt_dir": "$unet_med.bundle.weights_dir(@bundle_root, @fold)",
        "cache_dir": "$@bundle_root + '/.cache'",
        "dataset_dir": None,
        "datalist_file": "$@bundle_root + '/configs/datalist.json'" if tr["datalist"] else None,
        **({"demo": tr["demo"]} if tr["demo"] else {}),
        "device": DEVICE,
        "amp": tr["amp"],
        "cuda_amp": "$@amp and torch.device(@device).type == 'cuda'",
        "cpu_amp": "$@amp and torch.device(@device).type == 'cpu'",
        "compile": tr["compile"],
        "channels_last": tr["channels_last"],
        "seed": 0,
        "fold": None,
        "num_folds": tr["num_folds"],
        "resume": False,
        "allow_task_mismatch": False,
        "max_epochs": tr["max_epochs"],
        "val_interval": tr["val_interval"],
        "batch_size": tr["batch_size"],
        "num_samples": tr["num_samples"],
        "learning_rate": tr["learning_rate"],
        "early_stop_patience": 1000,
        "num_workers": 0,
        **task_ids(t),
        "network": "$@network_def.to(@device)",
        "preprocessing": preprocessing(t, ["image", "label"]),
        "label_transforms": {"_target_": "Compose", "transforms": labels},
        "datalist": _datalist(t),
        "loss": _loss(t),
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "params": "$@network.parameters()",
            "lr": "@learning_rate",
            "weight_decay": 1e-05,
        },
        **_lr_schedule(tr),
        "early_stop": {
            "_target_": "EarlyStopHandler",
            "trainer": None,
            "patience": "@early_stop_patience",
            "score_function": "$monai.handlers.stopping_fn_from_metric('val_mean_dice')",
            "epoch_level": True,
        },
        "train": {
            "augmentation": _augmentation(t),
            "preprocessing": {"_target_": "Compose", "transforms": train_chain},
            "dataset": {
                "_target_": "CacheDataset",
                "data": "$@datalist['training']",
                "transform": "@train#preprocessing",
                "cache_rate": 1.0,
                "num_workers": 1,
                "progress": False,
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@train#dataset",
                "batch_size": "@batch_size",
                "shuffle": True,
                "num_workers": "@num_workers",
                "drop_last": "@compile",
            },
            "inferer": {
                "_target_": "unet_med.inference.AutocastInferer",
                "inferer": {
                    "_target_": "unet_med.engines.CompiledInferer",
                    "inferer": {"_target_": "SimpleInferer"},
                    "enabled": "@compile",
                    "channels_last": "@channels_last",
                },
                "enabled": "@cpu_amp",
            },
            "key_metric": {"train_loss": {"_target_": "ignite.metrics.Average", "output_transform": loss_from}},
            "handlers": [
                handler(
                    "LrScheduleHandler",
                    lr_scheduler="@lr_scheduler",
                    print_lr=False,
                    epoch_level=tr["lr_schedule"] == "cosine",
                ),
                handler(
                    "ValidationHandler", validator="@validate#evaluator", epoch_level=True, interval="@val_interval"
                ),
                handler(
                    "unet_med.engines.ResumableCheckpoint",
                    save_dir="@ckpt_dir",
                    save_dict={"model": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"},
                    evaluator="@validate#evaluator",
                    resume="@resume",
                    datalist="@datalist",
                    task=_TASK_RECORD,
                ),
                handler(
                    "unet_med.engines.FinalModelSaver",
                    save_dir="@ckpt_dir",
                    network="@network",
                    evaluator="@validate#evaluator",
                ),
                handler("StatsHandler", _disabled_=RANK0_OFF, iteration_log=False),
                handler(
                    "TensorBoardStatsHandler",
                    _disabled_=RANK0_OFF,
                    log_dir="$@output_dir + '/tensorboard'",
                    tag_name="train_loss_iteration",
                    output_transform=loss_from,
                ),
                handler("ignite.handlers.ProgressBar", _disabled_=RANK0_OFF, persist=False),
            ],
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": "@max_epochs",
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": "@train#inferer",
                "amp": "@cuda_amp",
                "key_train_metric": "@train#key_metric",
                "metric_cmp_fn": "$operator.lt",
                "train_handlers": "@train#handlers",
            },
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": val_chain},
            "dataset": {
                "_target_": "CacheDataset",
                "data": "$@datalist['validation']",
                "transform": "@validate#preprocessing",
                "cache_rate": 1.0,
                "num_workers": 1,
                "progress": False,
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@validate#dataset",
                "batch_size": 1,
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "inferer": {
                "_target_": "unet_med.inference.AutocastInferer",
                "inferer": {
                    "_target_": "SlidingWindowInferer",
                    "roi_size": "@patch_size",
                    "sw_batch_size": tr["val_sw_batch_size"],
                    "overlap": tr["val_overlap"],
                    "mode": "gaussian",
                },
                "enabled": "@cpu_amp",
            },
            "postprocessing": {"_target_": "Compose", "transforms": _validation_postprocessing(t)},
            "key_metric": {
                "val_mean_dice": {
                    "_target_": "MeanDice",
                    "include_background": t["evaluation"]["report"] == "regions",
                    "output_transform": metric_from,
                }
            },
            "handlers": [
                handler("StatsHandler", _disabled_=RANK0_OFF, iteration_log=False),
                handler(
                    "TensorBoardStatsHandler",
                    _disabled_=RANK0_OFF,
                    log_dir="$@output_dir + '/tensorboard'",
                    iteration_log=False,
                ),
                handler(
                    "unet_med.engines.OverlayImageHandler",
                    _disabled_=RANK0_OFF,
                    log_dir="$@output_dir + '/tensorboard'",
                ),
                handler("unet_med.engines.BestModelSaver", save_dir="@ckpt_dir", network="@network"),
                "@early_stop",
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric",
                "amp": "@cuda_amp",
                "val_handlers": "@validate#handlers",
            },
        },
        "initialize": [
            "$unet_med.utils.brief_errors()",
            "$unet_med.utils.check_device(@device)",
            "$monai.utils.set_determinism(seed=@seed)",
            "$@datalist",
        ],
        "run": ["$@early_stop.set_trainer(@train#trainer)", "$@train#trainer.run()"],
        "training": "@run",
    }


def evaluate_config(t: dict[str, Any]) -> dict[str, Any]:
    """``evaluate.json``: the trained weights on the validation split, with per-case reports."""
    ev = t["evaluation"]
    report = ev["report"]
    members = t["inference"]["ensemble"]
    trained = "$unet_med.engines.load_network(@network_def, @model_file, @device)"
    if members > 1:
        trained = "$unet_med.inference.load_ensemble(@network_def, @model_file, @ensemble, @device)"
    config: dict[str, Any] = {
        "model_file": "$unet_med.bundle.evaluated_weights(@bundle_root, @ckpt_dir)",
        **({"ensemble": members} if members > 1 else {}),
        "mirror": False,
        "trained_network": trained,
        "network": "$unet_med.inference.mirrored(@trained_network, @mirror, @spatial_dims)",
        "eval_dir": "$@output_dir + '/eval'",
        "datalist#save_to": None,
    }
    if report in ("classes", "regions"):
        names = [r["name"] for r in ev["regions"]] if report == "regions" else "@class_names"
        config["validate#handlers"] = [
            handler("StatsHandler", iteration_log=False),
            handler(
                "unet_med.engines.CaseMetricsReport",
                output_dir="@eval_dir",
                class_names=names,
                include_background=report == "regions",
                surface_tolerance_mm=ev["surface_tolerance_mm"],
            ),
            handler("ignite.handlers.ProgressBar", persist=False),
        ]
    else:
        softmax = "$not @mirror" if members == 1 else False  # mirroring and ensembles give probabilities
        config["validate#postprocessing"] = {"_target_": "Activationsd", "keys": "pred", "softmax": softmax}
        config["validate#key_metric"] = None
        microscopy: dict[str, Any] = {"output_dir": "@eval_dir", "task": report}
        if report == "membranes":
            microscopy["membrane_class"] = 1
        else:
            microscopy["min_size"] = t["postprocessing"]["instances_min_size"]
            config["eval_label_transforms"] = {
                "_target_": "Compose",
                "transforms": [{"_target_": "CopyItemsd", "keys": "label", "names": "instances"}, "@label_transforms"],
            }
            config["validate#preprocessing#transforms"] = (
                "$@preprocessing.transforms + @eval_label_transforms.transforms"
            )
        microscopy["num_figures"] = ev["num_figures"]
        config["validate#handlers"] = [
            handler("unet_med.engines.MicroscopyReport", **microscopy),
            handler("ignite.handlers.ProgressBar", persist=False),
        ]
    config["run"] = ["$@validate#evaluator.run()"]
    config["evaluating"] = "@run"
    return config


def multi_gpu_config() -> dict[str, Any]:
    """``multi_gpu_train.json``: ``torchrun`` data-parallel training (NCCL on GPUs, gloo on CPUs)."""
    return {
        "+imports": ["$import os", "$import torch.distributed as dist"],
        "device": "$torch.device('cuda:' + os.environ['LOCAL_RANK']) if torch.cuda.is_available() "
        "else torch.device('cpu')",
        "network": "$torch.nn.parallel.DistributedDataParallel(@network_def.to(@device), "
        "device_ids=[@device] if torch.cuda.is_available() else None)",
        "train#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@train#dataset",
            "even_divisible": True,
            "shuffle": True,
        },
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        "validate#sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@validate#dataset",
            "even_divisible": False,
            "shuffle": False,
        },
        "validate#dataloader#sampler": "@validate#sampler",
        "initialize": [
            "$unet_med.utils.brief_errors()",
            "$dist.is_initialized() or dist.init_process_group(backend='nccl' if torch.cuda.is_available() "
            "else 'gloo')",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            "$monai.utils.set_determinism(seed=@seed)",
            "$@datalist",
        ],
        "finalize": ["$dist.is_initialized() and dist.destroy_process_group()"],
    }
