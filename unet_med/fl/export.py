"""Turning the federation's global model back into a normal bundle.

The new bundle has the original configs, docs and licence, ``models/model.pt`` as a plain state dict (tensors
only, loadable with ``weights_only=True``), and ``metadata.json`` with the version bumped and a changelog entry
that names the rounds and the sites. Training outputs and old exports (``model.ts``, ``model.onnx``) are not
carried over: they described the old weights.

Example::

    export_global_model("/tmp/fl_ws", "bundles/unet", "bundles/unet_fl", rounds=20, sites=["site-1", "site-2"])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from unet_med.bundle.build import build_bundle
from unet_med.bundle.task import load_task
from unet_med.bundle.template import config_text
from unet_med.utils.io import atomic_path

__all__ = ["GLOBAL_MODEL_FILE", "bump_version", "export_global_model", "find_global_model", "weights_mismatch"]

#: The file FLARE's PyTorch persistor writes the global model to.
GLOBAL_MODEL_FILE = "FL_global_model.pt"


def find_global_model(source: str | os.PathLike) -> Path:
    """``source`` itself when it is a file, else the one ``FL_global_model.pt`` under the folder ``source``.

    Raises:
        FileNotFoundError: nothing found.
        ValueError: several found (name the file).
    """
    path = Path(source)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    found = sorted(path.rglob(GLOBAL_MODEL_FILE))
    if not found:
        raise FileNotFoundError(f"no {GLOBAL_MODEL_FILE} under {path}; did the job finish a round?")
    if len(found) > 1:
        raise ValueError(f"several {GLOBAL_MODEL_FILE} under {path}; pass one of: {', '.join(map(str, found))}")
    return found[0]


def bump_version(version: str, part: str = "minor") -> str:
    """``"0.1.0"`` -> ``"0.2.0"`` (``part`` is ``"major"``, ``"minor"`` or ``"patch"``).

    Raises:
        ValueError: ``version`` is not MAJOR.MINOR.PATCH or ``part`` is unknown.
    """
    pieces = version.split(".")
    if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = map(int, pieces)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"part must be 'major', 'minor' or 'patch', got {part!r}")


def weights_mismatch(net: torch.nn.Module, state: Mapping[str, Any]) -> str | None:
    """``None`` when ``state`` has exactly ``net``'s tensors with their shapes, else a short description of the
    difference (``"3 tensor(s) differ in shape, e.g. head.weight (3, 4, 1, 1, 1) vs (3, 16, 1, 1, 1)"``)."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(torch.as_tensor(state[k]).shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and torch.as_tensor(state[k]).shape != own[k].shape
    ]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) differ in shape, e.g. {shapes[0]}")
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return "; ".join(problems) or None


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    data: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a state dict or a checkpoint with a 'model' entry")
    return {str(k): torch.as_tensor(v) for k, v in data.items()}


def export_global_model(
    workspace_or_model_file: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    out_bundle_dir: str | os.PathLike,
    rounds: int,
    sites: int | Sequence[str],
    bump: str = "minor",
) -> Path:
    """Writes ``out_bundle_dir``: ``bundle_dir`` with the global model as ``models/model.pt``. Returns it.

    Args:
        workspace_or_model_file: ``FL_global_model.pt``, or a folder holding exactly one (a simulator workspace,
            or a job result downloaded with FLARE's admin ``download_job``).
        bundle_dir: the bundle the job was written from.
        out_bundle_dir: the new bundle folder; it must not exist.
        rounds: the rounds the federation ran (for the changelog).
        sites: how many sites took part, or their names (for the changelog).
        bump: which part of the version to raise.

    Raises:
        ValueError: the weights do not fit the bundle's ``network_def`` (was the job written with overrides that
            change the network?), or a bad version.
        FileExistsError: ``out_bundle_dir`` exists.
    """
    from unet_med.bundle.export import bundle_parser
    from unet_med.bundle.pack import bundle_files

    bundle = Path(bundle_dir).resolve()
    out = Path(out_bundle_dir)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    source = find_global_model(workspace_or_model_file)
    state = _state_dict(source)
    net = bundle_parser(bundle, [bundle / "configs" / "train.json"]).get_parsed_content("network_def")
    problem = weights_mismatch(net, state)
    if problem:
        raise ValueError(
            f"{source} does not fit {bundle}'s network_def (was the job written with network overrides?): {problem}"
        )
    net.load_state_dict(state)
    weights = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}

    task = load_task(bundle)  # the new version and changelog go into the task; the template writes the metadata
    old = str(task["card"]["version"])
    version = bump_version(old, bump)
    if isinstance(sites, int):
        who = f"{sites} sites"
    else:
        who = f"{len(sites)} sites ({', '.join(sites)})"
    entry = (
        f"Federated training with NVIDIA FLARE (FedAvg, monai-nvflare MonaiAlgo): {rounds} round(s) across {who}, "
        f"starting from the {old} bundle; weights only changed, configs as in {old}."
    )
    task["card"]["version"] = version
    task["card"]["changelog"] = {version: entry, **dict(task["card"].get("changelog") or {})}

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for src in bundle_files(bundle):
            dst = stage / src.relative_to(bundle)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        with atomic_path(stage / "configs" / "task.json") as tmp:
            tmp.write_text(config_text(task), encoding="utf-8")
        build_bundle(stage)  # metadata.json (version, changelog) as the template makes it
        (stage / "models").mkdir(exist_ok=True)
        torch.save(weights, stage / "models" / "model.pt")
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out
