"""The static safety scan: allowed plumbing passes, everything reaching the system is reported with its key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from unet_med.bundle.scan import scan_bundle, scan_config, scan_expression, scan_target

REPO = Path(__file__).resolve().parents[2]
ALIASES = {"os": "os", "dist": "torch.distributed", "operator": "operator"}


@pytest.mark.parametrize(
    "expr",
    [
        "$@network_def.to(@device)",
        "$'cuda' if torch.cuda.is_available() else 'cpu'",
        "$torch.device('cuda:' + os.environ['LOCAL_RANK'])",
        "$os.environ.get('RANK', '0')",
        "$os.path.join(@bundle_root, 'models')",
        "$import os",
        "$import torch.distributed as dist",
        "$dist.is_initialized() or dist.init_process_group(backend='gloo')",
        "$@datalist['training'][: int(len(@datalist['training']) * 0.8)]",
        "$[{'image': f} for f in sorted(@files)]",
        "$monai.handlers.from_engine(['pred', 'label'])",
        "$torch.load(@path, weights_only=True)",
        "$operator.lt",
        "$lambda x: x['image']",
        "$numpy.uint8",
    ],
)
def test_plumbing_expressions_pass(expr):
    assert scan_expression(expr, ALIASES) == []


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("$__import__('os').system('id')", "__import__"),
        ("$os.system('id')", "os.system"),
        ("$os.remove(@file)", "os.remove"),
        ("$os.popen('id').read()", "os.popen"),
        ("$os", "used as a value"),
        ("$monai.utils", "used as a value"),
        ("$torch.nn.functional", "used as a value"),
        ("$import subprocess", "subprocess"),
        ("$from os import system", "os.system"),
        ("$import importlib", "importlib"),
        ("$import pickle", "pickle"),
        ("$import shutil", "shutil"),
        ("$import socket", "socket"),
        ("$import urllib.request", "urllib"),
        ("$eval('1 + 1')", "eval"),
        ("$exec('x = 1')", "exec"),
        ("$compile('1', 'f', 'eval')", "compile"),
        ("$open('/tmp/x', 'w').write('x')", "open"),
        ("$getattr(@obj, 'system')", "getattr"),
        ("$().__class__.__base__.__subclasses__()", "__class__"),
        ("$@network._modules", "_modules"),
        ("$torch.load(@path)", "weights_only=True"),
        ("$torch.load(@path, weights_only=False)", "weights_only=True"),
        ("$numpy.load(@path, allow_pickle=True)", "allow_pickle=False"),
        ("$torch.hub.load('evil/repo', 'model')", "torch.hub"),
        ("$monai.bundle.ConfigParser({'x': '$1'}).get_parsed_content('x')", "monai.bundle"),
        ("$monai.utils.optional_import('os')[0].system('id')", "optional_import"),
        ("$monai.bundle.scripts.os.system('id')", "monai.bundle"),
        ("$torch.serialization.pickle.loads(@blob)", "pickle"),
        ("$operator.attrgetter('__class__')(@x)", "operator.attrgetter"),
        ("$import os; os.system('id')", "only import statements"),
        ("$1 +", "not parsable"),
        ("$globals()['__builtins__']", "globals"),
    ],
)
def test_unsafe_expressions_are_reported(expr, reason):
    problems = scan_expression(expr, ALIASES)
    assert problems and any(reason in p for p in problems), problems


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("DiceCELoss", True),
        ("SupervisedTrainer", True),
        ("torch.optim.AdamW", True),
        ("ignite.handlers.ProgressBar", True),
        ("unet_med.networks.UNet", True),
        ("subprocess.Popen", False),
        ("os.system", False),
        ("builtins.exec", False),
        ("torch.hub.load", False),
        ("monai.bundle.ConfigParser", False),
        ("torch._C._jit_set_profiling_mode", False),
        ("NoSuchMonaiThing", False),
        ("$__import__('os').system", False),
    ],
)
def test_targets_follow_the_allow_list(target, allowed):
    assert (scan_target(target) is None) is allowed


def test_findings_name_file_and_key_path():
    config = {
        "ok": "$@a.b()",
        "train": {"handlers": [{"_target_": "subprocess.Popen", "args": ["id"]}]},
        "run": ["$@x.run()", "$os.system('id')"],
        "debug": {"_target_": "DiceCELoss", "_mode_": "debug"},
        "macro": "%/etc/evil.json#x",
    }
    findings = scan_config(config, "configs/evil.json", {"os": "os"}, ["evil.json"])
    keys = {f.key for f in findings}
    assert keys == {"train#handlers#0#_target_", "run#1", "debug#_mode_", "macro"}
    assert all(str(f).startswith("configs/evil.json: ") for f in findings)


def test_project_bundles_pass_the_scan():
    bundles = [p for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file()]
    assert bundles
    for bundle in bundles:
        assert scan_bundle(bundle) == [], bundle.name


def test_unreadable_config_is_a_finding(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "broken.json").write_text("{not json")
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0"}))
    findings = scan_bundle(tmp_path)
    assert [f.file for f in findings] == ["configs/broken.json"]


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize("name", ["bomb.yaml", "train.yml", "INFERENCE.YAML"])
def test_yaml_configs_are_refused_unparsed(tmp_path, monkeypatch, name):
    """A YAML alias bomb (9**9 strings once expanded) is refused by its file type in well under a second."""
    import yaml

    def no_parsing(*args, **kwargs):
        raise AssertionError("a YAML config was parsed")

    for loader in ("load", "safe_load", "full_load", "unsafe_load", "compose"):
        monkeypatch.setattr(yaml, loader, no_parsing)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0"}))
    (tmp_path / "configs" / name).write_text(BILLION_LAUGHS)
    start = time.perf_counter()
    findings = scan_bundle(tmp_path)
    assert time.perf_counter() - start < 1.0
    assert [str(f) for f in findings] == [
        f"configs/{name}: custom/unsupported file type: YAML configs are refused unread"
    ]
