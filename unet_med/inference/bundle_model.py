"""Everything inference needs from a bundle folder, read with MONAI's ``ConfigParser``.

Only the folder is needed: ``configs/inference.json`` (standalone, as MONAI's tools run it),
``configs/metadata.json`` and ``models/model.pt``. The network comes from the bundle's ``network_def``, the
preprocessing from its ``preprocessing``, and the post-processing settings (largest component, instance maps) from
the :class:`~unet_med.inference.postprocess.ScoresToLabelsd` step of its ``postprocessing``, so predictions match
what ``python -m monai.bundle run --config_file configs/inference.json`` writes.

Example::

    model = load_bundle("bundles/unet")
    model.spatial_dims, model.in_channels, model.num_classes, model.patch_size  # 3, 1, 3, (48, 48, 32)
    logits = model.network(torch.zeros(1, 1, 48, 48, 32))  # (1, 3, 48, 48, 32)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from unet_med.bundle.manifest import BundleError
from unet_med.bundle.recognize import require_recognized
from unet_med.inference.ensemble import load_ensemble, member_files
from unet_med.utils.quiet import monai_readers_quiet

__all__ = ["BundleError", "BundleModel", "load_bundle"]

_INFERENCE_CONFIG = "inference.json"
_LABELS_STEP = "unet_med.inference.ScoresToLabelsd"


@dataclasses.dataclass
class BundleModel:
    """A bundle's network (weights loaded, eval mode) and the settings inference needs.

    Attributes:
        root: the bundle folder.
        network: the network built from ``network_def`` with ``models/model.pt`` loaded (weights only); for a
            bundle shipping a fold ensemble (``ensemble`` > 1), a
            :class:`~unet_med.inference.ensemble.FoldEnsemble` of its members (probabilities out).
        preprocessing: the bundle's deterministic preprocessing for the ``"image"`` key, starting with
            ``LoadImaged`` (a MONAI ``Compose``, invertible so masks go back to the input's geometry).
        spatial_dims: 2 or 3.
        in_channels: image channels the network takes.
        num_classes: output channels (classes including background).
        patch_size: the sliding-window size (the bundle's ``patch_size``).
        class_names: one name per class, from the metadata's ``channel_def`` when present.
        name: the bundle's name from its metadata.
        keep_largest: labels whose largest connected component alone is kept (the bundle's
            ``keep_largest_component``; empty for most bundles).
        instances: keyword arguments of :func:`unet_med.transforms.classes_to_instances` when the bundle predicts
            background / interior / boundary and its output is an instance map (the bundle's
            ``instance_postprocessing``), else ``None``.
        task: the bundle's validated task description (``configs/task.json``), ``None`` for a bundle without one;
            its ``fingerprint`` drives the input check (:mod:`unet_med.inference.input_check`).
        version: the bundle's version from its metadata (DICOM results name it as their algorithm's version).
        class_codes: the coded concept (category, type) per foreground class name, from the configs'
            ``class_codes`` (see :mod:`unet_med.dicom.codes`); empty when the bundle has none.
    """

    root: Path
    network: torch.nn.Module
    preprocessing: Compose
    spatial_dims: int
    in_channels: int
    num_classes: int
    patch_size: tuple[int, ...]
    class_names: list[str]
    name: str
    keep_largest: tuple[int, ...] = ()
    instances: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    version: str = ""
    class_codes: dict[str, Any] = dataclasses.field(default_factory=dict)


def _config_file(configs: Path) -> Path:
    path = configs / _INFERENCE_CONFIG
    if not path.is_file():
        raise BundleError(f"{path}: missing; a bundle needs its standalone inference config")
    return path


def _metadata(configs: Path) -> dict[str, Any]:
    path = configs / "metadata.json"
    if not path.is_file():
        raise BundleError(f"{path}: missing; a bundle needs metadata.json")
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from e


def _get(parser: ConfigParser, key: str, default: Any = None) -> Any:
    return parser.get_parsed_content(key) if key in parser else default


def load_bundle(
    bundle_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    model_file: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    trust_bundle_code: bool = False,
) -> BundleModel:
    """Reads a bundle's configs and metadata, builds its network and loads the weights (``weights_only=True``).

    The bundle must first be recognised (:func:`unet_med.bundle.recognize.require_recognized`): its configs must be
    what the installed template makes from its task description. The configs and weights used are the bytes that
    were checked, so a file changed after the check is not what runs.

    Args:
        bundle_dir: the bundle folder (holding ``configs/`` and ``models/``).
        device: where the network is placed.
        model_file: weights to load instead of ``models/model.pt`` (for an ensemble: its first member, the others
            beside it; ``overrides={"ensemble": 1}`` loads this one file alone).
        overrides: config ids to override before parsing, e.g. ``{"patch_size": [96, 96, 96]}``.
        trust_bundle_code: accept a bundle that is not recognised (its configs are then evaluated as they are).

    Raises:
        BundleError: the bundle is not recognised, or a config, the metadata or the weights are missing or
            inconsistent.
    """
    root = Path(bundle_dir).resolve()
    configs = root / "configs"
    if not configs.is_dir():
        raise BundleError(f"{root}: not a bundle folder (no configs/)")
    recognised = require_recognized(root, trust_bundle_code=trust_bundle_code, weights=model_file is None)
    parser = ConfigParser()
    if recognised.ok:
        meta = json.loads(recognised.files["configs/metadata.json"])
        parser.read_config(recognised.config("inference.json"))
        parser.read_meta(meta)
    else:  # custom code, accepted on purpose
        meta = _metadata(configs)
        parser.read_config(str(_config_file(configs)))
        parser.read_meta(str(configs / "metadata.json"))
    parser["bundle_root"] = str(root)
    parser["ckpt_dir"] = str(root / "models")
    parser["device"] = str(device)
    for key, value in (overrides or {}).items():
        parser[key] = value

    fmt = meta.get("network_data_format", {})
    image_fmt = fmt.get("inputs", {}).get("image", {})
    pred_fmt = fmt.get("outputs", {}).get("pred", {})
    spatial_dims = int(_get(parser, "spatial_dims", len(image_fmt.get("spatial_shape", ())) or 3))
    in_channels = int(_get(parser, "in_channels", image_fmt.get("num_channels", 1)))
    num_classes = int(_get(parser, "num_classes", pred_fmt.get("num_channels", 0)))
    if image_fmt and int(image_fmt.get("num_channels", in_channels)) != in_channels:
        raise BundleError(f"{root}: metadata says {image_fmt['num_channels']} input channels, configs {in_channels}")
    if spatial_dims not in (2, 3):
        raise BundleError(f"{root}: spatial_dims must be 2 or 3, got {spatial_dims}")
    if "patch_size" not in parser:
        raise BundleError(f"{root}: configs define no patch_size (the sliding-window size)")
    patch_size = tuple(int(p) for p in parser.get_parsed_content("patch_size"))

    if "preprocessing" not in parser:
        raise BundleError(f"{root}: inference.json defines no preprocessing")
    with monai_readers_quiet():  # no GPU DICOM decoder: nothing to say
        preprocessing = parser.get_parsed_content("preprocessing")

    if "network_def" not in parser:
        raise BundleError(f"{root}: configs define no network_def")
    network = parser.get_parsed_content("network_def")
    members = int(_get(parser, "ensemble", 1))
    first = Path(model_file) if model_file is not None else root / "models" / "model.pt"
    weights: list[Path | bytes] = list(member_files(first, members))
    if model_file is None and recognised.weights is not None:  # the checked bytes
        checked: list[Path | bytes] = [recognised.weights, *recognised.member_weights.values()]
        weights = checked[:members]
    try:
        network = load_ensemble(network, weights, members, device)
    except FileNotFoundError as e:
        raise BundleError(f"{e}: missing; the bundle lacks trained weights") from e
    except ValueError as e:
        raise BundleError(str(e)) from e

    labels = _labels_step(parser)
    channel_def = pred_fmt.get("channel_def", {})
    class_names = [str(channel_def.get(str(i), i)) for i in range(num_classes)]
    return BundleModel(
        root=root,
        network=network,
        preprocessing=preprocessing,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        patch_size=_broadcast(patch_size, spatial_dims),
        class_names=class_names,
        name=str(meta.get("name", root.name)),
        keep_largest=tuple(int(v) for v in labels.get("keep_largest", ())),
        instances=_instances(labels, root, num_classes),
        task=recognised.task,
        version=str(meta.get("version", "")),
        class_codes=dict(_get(parser, "class_codes", {}) or {}),
    )


def _labels_step(parser: ConfigParser) -> dict[str, Any]:
    """The settings of the ``ScoresToLabelsd`` step of ``postprocessing`` (empty when there is none)."""
    steps = parser.get("postprocessing#transforms", []) if "postprocessing" in parser else []
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict) and step.get("_target_") == _LABELS_STEP:
            return {k: parser.get_parsed_content(f"postprocessing#transforms#{steps.index(step)}#{k}")
                    for k in ("keep_largest", "instances_min_size") if k in step}  # fmt: skip
    return {}


def _instances(labels: dict[str, Any], root: Path, num_classes: int) -> dict[str, Any] | None:
    min_size = labels.get("instances_min_size")
    if min_size is None:
        return None
    if num_classes != 3:
        raise BundleError(f"{root}: instance maps need 3 classes (background, interior, boundary), not {num_classes}")
    return {"min_size": int(min_size)}


def _broadcast(size: Sequence[int], dims: int) -> tuple[int, ...]:
    if len(size) == 1:
        return tuple(size) * dims
    if len(size) != dims:
        raise BundleError(f"patch_size {tuple(size)} does not have {dims} entries")
    return tuple(size)
