"""Recognition: a received bundle is trusted only when it is exactly what the receiver's own template makes.

A bundle's configs are code (MONAI evaluates ``$`` strings and instantiates any ``_target_``), and no scan can
decide whether arbitrary code is safe. So the receiver does not scan: it takes the bundle's data-only task
description (``configs/task.json``, checked against a JSON Schema first), renders it with its own installed
template (:func:`unet_med.bundle.template.render`), and requires every config to be byte-equal to the result.
Anything else is *custom code*, listed by file and key:

- a file outside the allowed set of its folder (a ``.py`` anywhere, a YAML config, an extra config, a TorchScript or
  ONNX model, a link, a cache folder of compiled code);
- a config, ``metadata.json`` or ``logging.conf`` that differs from the template's (an extra key, a changed ``$``
  expression, a ``_target_`` or ``%`` macro the template does not write);
- a task description or datalist that is not plain data (schema, duplicate keys, paths leaving the data folder);
- weights that are not a weights-only state dict of exactly the template network's keys and shapes (each member
  of a fold ensemble, ``models/model_fold{i}.pt``, checked like ``models/model.pt``; only the members the task's
  ``inference.ensemble`` names are allowed).

Nothing from the bundle is evaluated, imported or unpickled before the configs are recognised: the configs are
read as bytes and JSON, and only then are the weights loaded with ``torch.load(weights_only=True)`` from the bytes
read once, into the network the receiver's template builds. :class:`Recognition` keeps the exact bytes that were
checked, so a run built from it cannot load a file changed after the check (:func:`require_recognized`).

Example::

    result = recognize_bundle("received/hippocampus_mri")
    print(result.format())  # "recognised: ..." or one line per place of custom code
    result = require_recognized("received/hippocampus_mri")  # raises BundleError naming --trust-bundle-code
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from unet_med.bundle.integrity import check_integrity, site_trusted_keys
from unet_med.bundle.manifest import MANIFEST, SIGNATURE, BundleError
from unet_med.bundle.refusal import TRUST_FLAG, changed_after_packing, not_recognised
from unet_med.bundle.task import MAX_TASK_BYTES, TaskError, validate_task
from unet_med.bundle.template import render

__all__ = [
    "ALLOWED_FILES",
    "LOCAL_OUTPUTS",
    "TRUST_FLAG",
    "Recognition",
    "recognize_bundle",
    "require_recognized",
]

#: Files a bundle may hold, by folder: exact names, or suffixes for ``docs/``.
ALLOWED_FILES: dict[str, Any] = {
    ".": {"LICENSE", MANIFEST, SIGNATURE},
    "configs": {"task.json", "datalist.json"},  # plus the template's files
    "models": {"model.pt"},  # plus model_fold1.pt .. for the members of a fold ensemble (inference.ensemble)
    "docs": (".md", ".txt", ".png", ".jpg", ".jpeg"),
}
#: What training and inference write into a bundle folder locally; never read as code, so not checked.
LOCAL_OUTPUTS = ("runs", ".cache", "models/last.pt", "models/model_final.pt")
MAX_CONFIG_BYTES = 4 << 20
MAX_DATALIST_BYTES = 16 << 20
MAX_WEIGHTS_BYTES = 2 << 30
_MAX_DIFFS = 12  # differing places listed per file
_SAFE_PATH = re.compile(r"^[^$@%#\x00-\x1f][^#\x00-\x1f]*$")


@dataclass
class Recognition:
    """The verdict on one bundle folder, with the exact bytes that were checked.

    Attributes:
        root: the bundle folder.
        problems: every place of custom code or malformed data (``file: key: reason``); empty when recognised.
        task: the validated task description, when it is one.
        files: the bytes of every config read (``configs/<name>`` -> bytes), as checked.
        weights: the bytes of ``models/model.pt`` as checked (``None`` when not read).
        member_weights: the bytes of the other members of a fold ensemble (``model_fold1.pt`` -> bytes), as
            checked, in member order.
        signer: who signed the bundle's manifest, when the site pins keys (set by :func:`require_recognized`).
    """

    root: Path
    problems: list[str] = field(default_factory=list)
    task: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    weights: bytes | None = None
    member_weights: dict[str, bytes] = field(default_factory=dict)
    signer: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def config(self, name: str) -> dict[str, Any]:
        """A checked config (``"inference.json"``) parsed from the checked bytes."""
        return json.loads(self.files[f"configs/{name}"])

    def checked(self) -> dict[str, bytes]:
        """Every file read, as checked, by path relative to the bundle (``models/model.pt`` included when read)."""
        models = {f"models/{n}": d for n, d in self.member_weights.items()}
        return {**self.files, **({"models/model.pt": self.weights} if self.weights is not None else {}), **models}

    def format(self) -> str:
        if self.ok:
            return f"{self.root}: recognised: every config is what the installed unet_med template makes"
        lines = [f"{self.root}: custom code or unknown content in {len(self.problems)} place(s):"]
        return "\n".join(lines + [f"  - {p}" for p in self.problems])


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def _load_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_duplicates)


def _read(path: Path, limit: int) -> bytes:
    if path.stat().st_size > limit:
        raise ValueError(f"larger than {limit} bytes")
    with path.open("rb") as stream:  # one read: the bytes checked are the bytes used
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _model_names(task: dict[str, Any] | None) -> list[str]:
    """The weights files a bundle holds: ``model.pt``, then the other members of its fold ensemble."""
    members = int(((task or {}).get("inference") or {}).get("ensemble", 1))
    return ["model.pt"] + [f"model_fold{i}.pt" for i in range(1, members)]


def _layout(root: Path, template_files: set[str], models: list[str] | None = None) -> list[str]:
    """Every file or folder outside the allowed set (links included), by relative path."""
    problems = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == o or rel.startswith(f"{o}/") for o in LOCAL_OUTPUTS):
            continue
        if path.is_symlink():
            problems.append(f"{rel}: a link (not allowed in a bundle)")
            continue
        if path.is_dir():
            top = rel.split("/")[0]
            if top not in ("configs", "models", "docs") or (top != "docs" and "/" in rel):
                problems.append(f"{rel}/: a folder outside configs/, models/, docs/ (custom content)")
            continue
        folder, name = rel.rsplit("/", 1) if "/" in rel else (".", rel)
        top = folder.split("/")[0]
        if top == "docs":
            allowed = name.lower().endswith(ALLOWED_FILES["docs"])
        elif folder == "configs":
            allowed = name in ALLOWED_FILES["configs"] or name in template_files
        elif folder == "models":
            allowed = name in (models or ALLOWED_FILES["models"])
        else:
            allowed = name in ALLOWED_FILES.get(folder, set())
        if not path.is_file():
            problems.append(f"{rel}: not a regular file")
        elif not allowed:
            kind = "code" if name.endswith((".py", ".pyc", ".so", ".ts", ".onnx", ".pth")) else "a file type"
            problems.append(f"{rel}: {kind} outside the allowed set of {folder}/ (custom content)")
    return problems


def _differences(actual: Any, expected: Any, where: str, out: list[str]) -> None:
    if len(out) >= _MAX_DIFFS:
        return
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in expected:
            if key not in actual:
                out.append(f"{where}{key}: missing")
        for key, value in actual.items():
            if key not in expected:
                out.append(f"{where}{key}: not in the template ({json.dumps(value)[:80]})")
            else:
                _differences(value, expected[key], f"{where}{key}#", out)
    elif isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        for i, (a, e) in enumerate(zip(actual, expected)):
            _differences(a, e, f"{where}{i}#", out)
    elif isinstance(actual, str) and isinstance(expected, str) and actual != expected:
        out.append(f"{where.rstrip('#')}: {_first_difference(actual, expected)}")
    elif actual != expected or type(actual) is not type(expected):
        out.append(f"{where.rstrip('#')}: {json.dumps(actual)[:80]} where the template has {json.dumps(expected)[:80]}")


def _first_difference(actual: str, expected: str, context: int = 30) -> str:
    """Where two strings first differ, with ``context`` characters either side of that place in each."""
    at = next((i for i, (a, e) in enumerate(zip(actual, expected)) if a != e), min(len(actual), len(expected)))

    def excerpt(text: str) -> str:
        start, end = max(0, at - context), at + context
        return f"{'...' if start else ''}{json.dumps(text[start:end])[1:-1]}{'...' if end < len(text) else ''}"

    return (
        f"differs from the template's rendering at character {at + 1}: "
        f'the file has "{excerpt(actual)}", the template makes "{excerpt(expected)}"'
    )


def _config_problems(name: str, data: bytes, text: str) -> list[str]:
    if data == text.encode("utf-8"):
        return []
    if not name.endswith(".json"):
        return [f"configs/{name}: not byte-equal to the template's (its content is run as code)"]
    try:
        actual = _load_json(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
        return [f"configs/{name}: not valid JSON ({e})"]
    found: list[str] = []
    _differences(actual, json.loads(text), "", found)
    if not found:
        return [f"configs/{name}: same content, other bytes than the template's (write it with unet-med bundle build)"]
    return [f"configs/{name}: {d}" for d in found]


def _path_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _SAFE_PATH.match(value):
        return f"{json.dumps(value)[:60]} is not a plain relative path"
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or value.startswith("~") or "\\" in value:
        return f"{value!r} leaves the data folder"
    return None


def _datalist_problems(data: bytes) -> list[str]:
    try:
        datalist = _load_json(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
        return [f"configs/datalist.json: not valid JSON ({e})"]
    if not isinstance(datalist, dict) or set(datalist) - {"description", "training", "validation"}:
        return ["configs/datalist.json: only 'description', 'training' and 'validation' are allowed"]
    problems = []
    if not isinstance(datalist.get("description", ""), str):
        problems.append("configs/datalist.json: description: not a string")
    for split in ("training", "validation"):
        items = datalist.get(split, [])
        if not isinstance(items, list):
            problems.append(f"configs/datalist.json: {split}: not a list")
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not set(item) <= {"image", "label"} or "image" not in item:
                problems.append(f"configs/datalist.json: {split}#{i}: only 'image' and 'label' paths are allowed")
                continue
            for key, value in item.items():
                for path in value if isinstance(value, list) and key == "image" else [value]:
                    reason = _path_problem(path)
                    if reason:
                        problems.append(f"configs/datalist.json: {split}#{i}#{key}: {reason}")
        if len(problems) > _MAX_DIFFS:
            break
    return problems[:_MAX_DIFFS]


def _weights_problems(data: bytes, inference: dict[str, Any], name: str = "model.pt") -> list[str]:
    """The weights as data: a weights-only state dict whose keys and shapes are the template network's."""
    import torch
    from monai.bundle import ConfigParser

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # anything but plain tensors in plain containers is refused by the loader
        return [f"models/{name}: not a weights-only state dict ({type(e).__name__}: {str(e).splitlines()[0][:200]})"]
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return [f"models/{name}: not a mapping of parameter names to tensors"]
    parser = ConfigParser({k: inference[k] for k in ("spatial_dims", "in_channels", "num_classes", "features")})
    parser["network_def"] = inference["network_def"]  # the template's own network, recognised above
    expected = {k: tuple(v.shape) for k, v in parser.get_parsed_content("network_def").state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    for what, keys in (
        ("not parameters of the template network", [k for k in actual if k not in expected]),
        ("missing", [k for k in expected if k not in actual]),
    ):
        if keys:
            problems.append(f"models/{name}: {len(keys)} tensor(s) {what} ({', '.join(keys[:3])}, ...)")
    problems += [
        f"models/{name}: {k} has shape {list(actual[k])}, the network {list(expected[k])}"
        for k in expected
        if k in actual and actual[k] != expected[k]
    ]
    bad_types = sorted({str(v.dtype) for v in state.values() if not v.is_floating_point() and v.dtype != torch.int64})
    if bad_types:
        problems.append(f"models/{name}: tensors of type {bad_types}")
    return problems[:_MAX_DIFFS]


def _read_once(root: Path, rel: str, limit: int, result: Recognition) -> bytes | None:
    """The bytes of a file that must be there (a regular file, not a link), or ``None`` with the problem noted."""
    path = root / rel
    if path.is_symlink() or not path.is_file():
        result.problems.append(f"{rel}: missing")
        return None
    try:
        return _read(path, limit)
    except (ValueError, OSError) as e:
        result.problems.append(f"{rel}: {e}")
        return None


def recognize_bundle(bundle_dir: str | os.PathLike, weights: bool = True) -> Recognition:
    """Checks a bundle folder against the installed template, reading it as data only (see the module docs).

    Args:
        bundle_dir: the bundle folder.
        weights: also check ``models/model.pt`` (after the configs are recognised).
    """
    root = Path(bundle_dir).resolve()
    result = Recognition(root)
    if not root.is_dir():
        result.problems.append(f"{root}: not a folder")
        return result
    task_path = root / "configs" / "task.json"
    try:
        if task_path.is_symlink() or not task_path.is_file():
            raise TaskError("configs/task.json", ["missing: only bundles made from a task description are recognised"])
        data = _read(task_path, MAX_TASK_BYTES)
        result.files["configs/task.json"] = data
        try:
            task = _load_json(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
            raise TaskError("configs/task.json", [f"not valid JSON ({e})"]) from e
        result.task = validate_task(task, source="configs/task.json")
        rendered = render(result.task)
    except (TaskError, ValueError, OSError) as e:
        problems = e.problems if isinstance(e, TaskError) else [str(e)]
        result.problems += [p if p.startswith("configs/") else f"configs/task.json: {p}" for p in problems]
        result.problems += _layout(root, set())
        return result
    result.problems += _layout(root, set(rendered), _model_names(result.task))
    for name, text in rendered.items():
        config = _read_once(root, f"configs/{name}", MAX_CONFIG_BYTES, result)
        if config is not None:
            result.files[f"configs/{name}"] = config
            result.problems += _config_problems(name, config, text)
    datalist = root / "configs" / "datalist.json"
    if datalist.is_file() and not datalist.is_symlink():
        try:
            data = _read(datalist, MAX_DATALIST_BYTES)
            result.files["configs/datalist.json"] = data
            result.problems += _datalist_problems(data)
        except (ValueError, OSError) as e:
            result.problems.append(f"configs/datalist.json: {e}")
    if weights and result.ok:  # only a recognised bundle's weights are unpickled (weights_only)
        for name in _model_names(result.task):
            model = _read_once(root, f"models/{name}", MAX_WEIGHTS_BYTES, result)
            if model is None:
                continue
            result.problems += _weights_problems(model, result.config("inference.json"), name)
            if name == "model.pt":
                result.weights = model
            else:
                result.member_weights[name] = model
    return result


def require_recognized(
    bundle_dir: str | os.PathLike, trust_bundle_code: bool = False, weights: bool = True
) -> Recognition:
    """The gate before a bundle runs: its integrity (:func:`unet_med.bundle.integrity.check_integrity`: every file
    as its ``manifest.json`` lists it, signed by a pinned key when the site pins keys), then
    :func:`recognize_bundle`.

    Args:
        bundle_dir: the bundle folder.
        trust_bundle_code: accept a bundle that is not recognised (never one changed after packing).
        weights: also check ``models/model.pt`` as data of the template network.

    Raises:
        BundleError: one message saying which file changed or differs and what to do, then every problem.
    """
    result = recognize_bundle(bundle_dir, weights=weights)
    integrity = check_integrity(result.root, result.checked(), LOCAL_OUTPUTS, site_trusted_keys())
    result.signer = integrity.signer
    if integrity.problems:
        message = changed_after_packing(result.root, result.problems, integrity)
        raise BundleError(message, integrity.problems + result.problems)
    if not result.ok and not trust_bundle_code:
        raise BundleError(not_recognised(result.root, result.problems, integrity), result.problems)
    return result
