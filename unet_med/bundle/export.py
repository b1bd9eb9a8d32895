"""Exporting a bundle's network to TorchScript and ONNX, and loading it back.

Both exports build ``network_def`` from the bundle's base config and load ``models/model.pt`` with
``weights_only=True`` (:func:`unet_med.engines.load_network`), so no pickled code runs. The TorchScript file is
written the way ``monai.bundle ckpt_export`` writes it: the metadata and the config files ride along as extra
files under ``<file stem>/extra/``, so the model file alone describes itself and MONAI Deploy's
``MonaiBundleInferenceOperator`` finds ``metadata.json`` and ``inference.json`` where it looks. ONNX uses
``torch.onnx.export(dynamo=True)`` and needs the ``export`` extra (``pip install 'unet-med[export]'``).

Run these only on a recognised bundle (:func:`unet_med.bundle.recognize.require_recognized`): building ``network_def``
evaluates the config.

Example::

    net = build_network("bundles/unet", weights="bundles/unet/models/model.pt")
    export_torchscript("bundles/unet", "model.ts")
    export_onnx("bundles/unet", "model.onnx", input_shape=(1, 1, 48, 48, 32))
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from unet_med.utils.io import atomic_path
from unet_med.utils.quiet import onnx_export_quiet

__all__ = [
    "base_config",
    "build_network",
    "bundle_parser",
    "example_input_shape",
    "export_onnx",
    "export_torchscript",
    "onnx_input_shape",
    "require_onnx",
    "torchscript_extra_files",
]


def base_config(bundle_dir: str | os.PathLike) -> Path:
    """The standalone config that defines ``network_def``: ``configs/inference.json``.

    Raises:
        ValueError: the bundle has no ``configs/inference.json``.
    """
    path = Path(bundle_dir) / "configs" / "inference.json"
    if not path.is_file():
        raise ValueError(f"{bundle_dir}: no configs/inference.json")
    return path


def bundle_parser(bundle_dir: str | os.PathLike, configs: Sequence[str | os.PathLike] | None = None) -> Any:
    """A ``monai.bundle.ConfigParser`` of ``configs`` (default: the base config) with the bundle's metadata and
    ``bundle_root`` set to ``bundle_dir``. Nothing is evaluated until an item is asked for."""
    from monai.bundle import ConfigParser

    root = Path(bundle_dir).resolve()
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs] if configs else str(base_config(root)))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser["bundle_root"] = str(root)
    return parser


def build_network(bundle_dir: str | os.PathLike, weights: str | os.PathLike | None = None) -> torch.nn.Module:
    """``network_def`` of the bundle on the CPU in eval mode, with ``weights`` loaded (``weights_only=True``)."""
    from unet_med.engines import load_network

    net = bundle_parser(bundle_dir).get_parsed_content("network_def")
    if not isinstance(net, torch.nn.Module):
        raise ValueError(f"{bundle_dir}: network_def is a {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_network(net, weights)
    return net.eval()


def _spatial_size(spec: Any, n: int) -> int:
    """One axis of a metadata ``spatial_shape`` entry (``64``, ``"16*n"``, ``"2**p"``, ``"*"``) as a size."""
    if isinstance(spec, int):
        return spec
    text = str(spec).replace(" ", "")
    if text == "*":
        return 16 * n
    if "**p" in text:
        return int(text.split("**")[0]) ** n
    if "*n" in text:
        return int(text.split("*")[0]) * n
    return int(text)


def example_input_shape(bundle_dir: str | os.PathLike, n: int = 2) -> tuple[int, ...]:
    """``(1, C, *spatial)`` from the metadata's ``network_data_format`` inputs ``image`` entry, with ``n`` (and
    ``p``) set to ``n``: ``["16*n", "16*n", "16*n"]`` gives ``(1, 1, 32, 32, 32)`` for ``n=2``."""
    meta = json.loads((Path(bundle_dir) / "configs" / "metadata.json").read_text(encoding="utf-8"))
    try:
        image = meta["network_data_format"]["inputs"]["image"]
        return (1, int(image["num_channels"]), *(_spatial_size(s, n) for s in image["spatial_shape"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{bundle_dir}: metadata lacks a usable network_data_format#inputs#image ({e})") from e


def torchscript_extra_files(bundle_dir: str | os.PathLike) -> dict[str, bytes]:
    """The extra files a TorchScript export carries, as ``monai.bundle ckpt_export`` writes them: the metadata as
    ``metadata.json`` and every JSON config (``inference.json`` among them) as ``<config stem>.json``, re-serialised
    as compact JSON, with ``bundle_root`` set to ``"."``."""
    root = Path(bundle_dir)
    meta = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    extra = {"metadata.json": json.dumps(meta).encode()}
    for p in sorted((root / "configs").glob("*.json")):
        if p.name not in ("metadata.json", "task.json", "datalist.json"):
            config = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(config, dict) and "bundle_root" in config:
                # Inside a model file there is no bundle folder: tools that parse the embedded config (MONAI
                # Deploy's bundle operator builds the postprocessing, then drops its writer) get a plain value.
                config["bundle_root"] = "."
            extra[f"{p.stem}.json"] = json.dumps(config).encode()
    return extra


def export_torchscript(
    bundle_dir: str | os.PathLike, out: str | os.PathLike, weights: str | os.PathLike | None = None
) -> Path:
    """Scripts the bundle's network with its weights and writes it to ``out`` with the metadata and configs as
    extra files (as ``monai.bundle ckpt_export`` does). Returns ``out``.

    The archive's root folder is ``out``'s stem, as ``torch.jit.save`` names it when given a path, so the extra
    files lie at ``<stem>/extra/metadata.json``, ``<stem>/extra/inference.json``, ... where
    ``ckpt_export``/``save_net_with_metadata`` put them and where MONAI Deploy's ``MonaiBundleInferenceOperator``
    reads them (``models/model.ts`` holds ``model/extra/...``). Saving to a stream would name the root
    ``archive/`` instead. The file is written under its final name in a temporary folder beside ``out`` and then
    renamed over ``out``, so readers never see a half-written file.
    """
    from monai.networks.utils import convert_to_torchscript

    root = Path(bundle_dir)
    out = Path(out)
    net = build_network(root, weights or root / "models" / "model.pt")
    scripted = convert_to_torchscript(model=net)
    extra = torchscript_extra_files(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".part", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name  # torch.jit.save names the archive root after this file's stem
        torch.jit.save(scripted, str(staged), _extra_files=extra)
        os.replace(staged, out)
    return out


def require_onnx() -> None:
    """Raises ``ImportError`` naming the ``export`` extra when onnx, onnxscript or onnxruntime is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install 'unet-med[export]'")


def export_onnx(
    bundle_dir: str | os.PathLike,
    out: str | os.PathLike,
    input_shape: Sequence[int] | None = None,
    weights: str | os.PathLike | None = None,
) -> Path:
    """Exports the bundle's network with ``torch.onnx.export(dynamo=True)`` for inputs of ``input_shape``
    (default: the base config's ``patch_size``, which sliding-window inference feeds the network, else
    :func:`example_input_shape`). Returns ``out``.

    The exported graph has a fixed input shape: the network checks divisibility with Python ints, which
    ``torch.export`` specialises.
    """
    require_onnx()
    root = Path(bundle_dir)
    net = build_network(root, weights or root / "models" / "model.pt")
    shape = tuple(input_shape) if input_shape else onnx_input_shape(root)
    with onnx_export_quiet():  # torchvision-not-installed and LeafSpec notices, nothing else
        program = torch.onnx.export(net, (torch.zeros(shape),), dynamo=True, verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    with atomic_path(out) as tmp:
        program.save(str(tmp))
    return Path(out)


def onnx_input_shape(bundle_dir: str | os.PathLike) -> tuple[int, ...]:
    """The input shape used for ONNX export: ``(1, C, *patch_size)`` when the base config has ``patch_size``."""
    shape = example_input_shape(bundle_dir)
    try:
        patch = bundle_parser(bundle_dir).get("patch_size")
    except Exception:  # a config without patch_size, or one that does not parse
        patch = None
    if isinstance(patch, list) and len(patch) == len(shape) - 2 and all(isinstance(s, int) for s in patch):
        return (1, shape[1], *patch)
    return shape
