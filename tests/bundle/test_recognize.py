"""Recognition against a planted-attack corpus: every attack is refused before anything of the bundle runs.

Each attack is a copy of the reference bundle with a payload that creates a canary file if any of it is evaluated,
imported or unpickled. For every attack: recognition lists the place, and ``unet-med predict``, ``unet-med bundle
run`` and ``unet-med bundle verify`` refuse it with the canary still absent. A few payloads are also run with
``--trust-bundle-code`` to prove they are live (the canary then appears).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from unet_med.bundle.build import build_bundle
from unet_med.bundle.recognize import recognize_bundle
from unet_med.bundle.verify import verify_bundle
from unet_med.cli import main

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unet"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _edit(bundle: Path, name: str, change: Callable[[dict], None]) -> None:
    path = bundle / "configs" / name
    config = _json(path)
    change(config)
    path.write_text(json.dumps(config, indent=4) + "\n")


def _touch(canary: Path) -> str:
    return f"__import__('pathlib').Path({str(canary)!r}).touch()"


class Payload:
    """A pickled object whose unpickling creates the canary."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def _comprehension(b: Path, c: Path) -> str:
    _edit(b, "inference.json", lambda x: x["initialize"].append(f"$[{_touch(c)} for p in [0]]"))
    return "configs/inference.json: initialize"


def _lambda(b: Path, c: Path) -> str:
    _edit(b, "inference.json", lambda x: x["initialize"].append(f"$(lambda p: {_touch(c)})(0)"))
    return "configs/inference.json: initialize"


def _module_by_reference(b: Path, c: Path) -> str:
    def change(x: dict) -> None:
        x["pathlib_module"] = "$import pathlib"
        x["initialize"].append(f"$@pathlib_module.Path({str(c)!r}).touch()")

    _edit(b, "inference.json", change)
    return "configs/inference.json: pathlib_module: not in the template"


def _allowed_package_writes(b: Path, c: Path) -> str:
    handler = {"_target_": "unet_med.utils.io.atomic_write_json", "path": str(c), "obj": 1}
    _edit(b, "inference.json", lambda x: x["handlers"].append(handler))
    return "configs/inference.json: handlers"


def _torch_load_target(b: Path, c: Path) -> str:
    torch.save(Payload(c), b / "configs" / "state.bin")  # pickled payload next to the configs
    loader = {"_target_": "torch.load", "f": str(b / "configs" / "state.bin"), "weights_only": False}
    _edit(b, "inference.json", lambda x: x.update(extra_state=loader, initialize=[*x["initialize"], "$@extra_state"]))
    return "configs/state.bin"


def _target_suffix_key(b: Path, c: Path) -> str:
    _edit(b, "inference.json", lambda x: x.update(writer_target_={"_target_": "pathlib.Path.touch", "self": str(c)}))
    return "configs/inference.json: writer_target_"


def _hash_path_target(b: Path, c: Path) -> str:
    _edit(b, "evaluate.json", lambda x: x.update({"validate#handlers#0#_target_": "pathlib.Path.touch"}))
    return "configs/evaluate.json: validate#handlers#0#_target_"


def _macro(b: Path, c: Path) -> str:
    (b.parent / "evil.json").write_text(json.dumps({"p": f"${_touch(c)}"}))
    _edit(b, "inference.json", lambda x: x.update(network="%../evil.json#p"))
    return "configs/inference.json: network"


def _python_file_at_root(b: Path, c: Path) -> str:
    (b / "tifffile.py").write_text(f"{_touch(c)}\n")  # named like an optional dependency on sys.path
    (b / "configs" / "helpers.py").write_text(f"{_touch(c)}\n")
    return "tifffile.py: code outside the allowed set"


def _logging_interpolation(b: Path, c: Path) -> str:
    """MONAI 1.6.1 checks ``args=`` raw (a literal string here); ``fileConfig`` interpolates it into code first."""
    conf = b / "configs" / "logging.conf"
    payload = f"x=', {_touch(c)}, '"
    text = conf.read_text().replace("args=(sys.stdout,)", "args=('%(x)s',)").replace("%(", "%%(")
    conf.write_text(f"[DEFAULT]\n{payload}\n\n" + text.replace("('%%(x)s',)", "('%(x)s',)"))
    return "configs/logging.conf: not byte-equal"


def _torchscript_model(b: Path, c: Path) -> str:
    (b / "models" / "model.ts").write_bytes(b"PK\x03\x04 a sender's TorchScript file is never loaded")
    return "models/model.ts: code outside the allowed set"


def _yaml_bomb(b: Path, c: Path) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")  # 9^9 strings if expanded
    (b / "configs" / "inference.yaml").write_text("\n".join(lines) + "\n")
    return "configs/inference.yaml: a file type outside the allowed set"


def _nesting_bomb(b: Path, c: Path) -> str:
    (b / "configs" / "train.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    return "configs/train.json: not valid JSON"


def _dollar_in_task(b: Path, c: Path) -> str:
    task = _json(b / "configs" / "task.json")
    task["classes"][1] = f"${_touch(c)}"
    (b / "configs" / "task.json").write_text(json.dumps(task))
    return "configs/task.json: classes.1"


def _duplicate_key_in_task(b: Path, c: Path) -> str:
    path = b / "configs" / "task.json"
    text = path.read_text()
    path.write_text(text.replace('"format": 1,', '"format": 1,\n    "format": 1,', 1))
    return "duplicate keys"


def _pickle_in_weights(b: Path, c: Path) -> str:
    with open(b / "models" / "model.pt", "wb") as f:
        pickle.dump(Payload(c), f)
    return "models/model.pt: not a weights-only state dict"


def _foreign_weights(b: Path, c: Path) -> str:
    state = torch.load(b / "models" / "model.pt", weights_only=True)
    state = state.get("model", state)
    state["head.weight"] = torch.zeros(5, *state["head.weight"].shape[1:])  # five classes instead of three
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, b / "models" / "model.pt")
    return "models/model.pt: head.weight has shape"


def _metadata_expression(b: Path, c: Path) -> str:
    _edit(b, "metadata.json", lambda x: x.update(task=f"${_touch(c)}"))
    return "configs/metadata.json: task"


def _datalist_escape(b: Path, c: Path) -> str:
    datalist = {"training": [{"image": "../../etc/passwd", "label": "x.nii.gz"}], "validation": []}
    (b / "configs" / "datalist.json").write_text(json.dumps(datalist))
    return "configs/datalist.json: training#0#image"


def _linked_config(b: Path, c: Path) -> str:
    target = b.parent / "elsewhere.json"
    shutil.copy(b / "configs" / "inference.json", target)
    (b / "configs" / "inference.json").unlink()
    (b / "configs" / "inference.json").symlink_to(target)
    return "configs/inference.json: a link"


def _extra_folder(b: Path, c: Path) -> str:
    (b / "scripts").mkdir()
    (b / "scripts" / "__init__.py").write_text(f"{_touch(c)}\n")
    return "scripts/: a folder outside"


ATTACKS: dict[str, Callable[[Path, Path], str]] = {
    "comprehension": _comprehension,
    "lambda": _lambda,
    "module by reference": _module_by_reference,
    "file write in an allowed package": _allowed_package_writes,
    "torch.load as a target": _torch_load_target,
    "key ending in _target_": _target_suffix_key,
    "#-path _target_": _hash_path_target,
    "% macro": _macro,
    "python file at the root": _python_file_at_root,
    "logging.conf interpolation": _logging_interpolation,
    "TorchScript model file": _torchscript_model,
    "YAML alias bomb": _yaml_bomb,
    "JSON nesting bomb": _nesting_bomb,
    "$ in the task description": _dollar_in_task,
    "duplicate key in the task": _duplicate_key_in_task,
    "pickle in the weights": _pickle_in_weights,
    "weights of another network": _foreign_weights,
    "expression in the metadata": _metadata_expression,
    "datalist leaving the data folder": _datalist_escape,
    "linked config": _linked_config,
    "extra code folder": _extra_folder,
}


@pytest.fixture
def case(tmp_path: Path) -> Path:
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 24)).astype(np.float32), np.eye(4)), path)
    return path


def _planted(tmp_path: Path, attack: str) -> tuple[Path, Path, str]:
    bundle = tmp_path / "received" / "unet"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("runs", ".cache", "last.pt"))
    canary = tmp_path / "canary"
    place = ATTACKS[attack](bundle, canary)
    return bundle, canary, place


def test_the_shipped_bundles_are_recognised():
    for bundle in sorted((REPO / "bundles").iterdir()):
        result = recognize_bundle(bundle)
        assert result.ok, result.format()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused_everywhere_before_anything_runs(attack, tmp_path, case, capsys):
    bundle, canary, place = _planted(tmp_path, attack)
    start = time.perf_counter()
    result = recognize_bundle(bundle)
    assert time.perf_counter() - start < 5
    assert not result.ok
    assert any(place in p for p in result.problems), result.format()

    out = tmp_path / "out"
    assert main(["predict", "--bundle", str(bundle), "--input", str(case), "--output", str(out), "--quiet"]) == 2
    assert "--trust-bundle-code" in capsys.readouterr().err
    assert main(["bundle", "run", str(bundle), "inferring", "--input", str(case), "--output_dir", str(out)]) == 2
    report = verify_bundle(bundle, onnx=False)
    assert not report.ok
    assert {c.name: c.status for c in report.checks}["end to end"] == "SKIP"
    assert not canary.exists(), "the payload ran"
    assert not out.exists()


@pytest.mark.parametrize("attack", ["comprehension", "module by reference", "file write in an allowed package"])
def test_the_payloads_are_live_when_code_is_trusted(attack, tmp_path, case):
    """With --trust-bundle-code the same bundle runs its payload: the refusals above are not vacuous."""
    bundle, canary, _ = _planted(tmp_path, attack)
    args = ["bundle", "run", str(bundle), "inferring", "--trust-bundle-code"]
    with contextlib.suppress(Exception):  # a payload may break the run after it has run
        main([*args, "--input", str(case), "--output_dir", str(tmp_path / "out"), "--device", "cpu"])
    assert canary.exists()


def test_the_logging_payload_passes_monai_own_check_and_runs(tmp_path):
    """The hole reported in docs/sharing-bundles.md: MONAI's validated logging path runs the payload."""
    bundle, canary, _ = _planted(tmp_path, "logging.conf interpolation")
    code = "import sys; from monai.bundle.workflows import _apply_logging_file; _apply_logging_file(sys.argv[1])"
    # in a child process: fileConfig replaces this process's logging; the handler's constructor then fails
    subprocess.run([sys.executable, "-c", code, str(bundle / "configs" / "logging.conf")], capture_output=True)
    assert canary.exists()


def test_an_edit_after_verify_is_refused_by_predict(tmp_path, case, capsys):
    bundle = tmp_path / "unet"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("runs", ".cache", "last.pt"))
    assert verify_bundle(bundle, onnx=False).ok
    _comprehension(bundle, tmp_path / "canary")
    assert main(["predict", "--bundle", str(bundle), "--input", str(case), "--output", str(tmp_path / "o")]) == 2
    assert "configs/inference.json: initialize" in capsys.readouterr().err
    assert not (tmp_path / "canary").exists()


def test_a_regenerated_bundle_with_a_changed_task_is_recognised(tmp_path):
    """Recognition is of the template, not of known files: any valid task rendered by the template passes."""
    bundle = tmp_path / "unet"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("runs", ".cache", "last.pt"))
    task = _json(bundle / "configs" / "task.json")
    task["training"]["max_epochs"] = 7
    task["card"]["description"] = "Retrained at another site, 7 epochs."
    (bundle / "configs" / "task.json").write_text(json.dumps(task))
    assert not recognize_bundle(bundle).ok
    build_bundle(bundle)
    assert recognize_bundle(bundle).ok


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "bundles").iterdir() if p.is_dir()))
def test_every_shipped_bundle_signs_packs_unpacks_and_is_recognised(name, tmp_path):
    from unet_med.bundle.pack import pack_bundle, unpack_bundle
    from unet_med.bundle.signing import generate_key, verify_signature

    (tmp_path / "trusted").mkdir()
    generate_key(tmp_path / "k.pem", tmp_path / "trusted" / "k.pem")
    archive = pack_bundle(REPO / "bundles" / name, tmp_path / f"{name}.zip", key=tmp_path / "k.pem", signer="Dr A")
    received = unpack_bundle(archive, tmp_path / "received" / name)
    assert verify_signature(received, tmp_path / "trusted").ok
    assert recognize_bundle(received).ok, recognize_bundle(received).format()
