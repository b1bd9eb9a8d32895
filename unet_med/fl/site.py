"""What a site checks before it trains a received FLARE job: the whole job is recognised, not only its bundle.

A site's FLARE client runs what the job's ``config_fed_client.json`` names, with the arguments it gives. Besides
the bundle's configs (code: MONAI evaluates ``$`` strings and builds any ``_target_``), the bundle overrides in
that file are code too (an override ``"$__import__('os')..."`` runs like any config expression), and so are the
component and its arguments: a job can name plain ``monai.fl.client.MonaiAlgo``, or turn checkpoint loading back
on so that the site loads whatever ``models/model.pt`` the job carries. So a site recognises the job the way
:mod:`unet_med.bundle.recognize` recognises a bundle, by comparison with what its own installed ``unet_med``
writes:

- :func:`check_job` (``unet-med fl check JOB_DIR``), before the site agrees to run a job: the app holds nothing but
  the two FLARE configs and the bundle; the client config is exactly what :func:`unet_med.fl.job.client_config`
  writes for the parameters it states (components, filters, executor); the overrides in it are plain data; the
  bundle is recognised.
- :class:`RecognizedMonaiAlgo`, the site component the job names: it checks its own arguments and recognises the
  bundle in its app folder before MONAI's ``MonaiAlgo`` parses anything, so a bundle or argument changed after the
  check, or a site whose installed template differs from the job writer's, stops the site before any config runs.

A site that accepts a bundle's custom code on purpose sets ``UNET_MED_TRUST_BUNDLE_CODE=1`` in the environment of
its own client process; the job cannot set it. Overrides must be plain data either way.

Example::

    problems = check_job("downloads/hippocampus_mri_fedavg")  # [] when the job is what unet-med fl job writes
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.fl.client import MonaiAlgo
from monai.fl.utils.constants import ExtraItems

from unet_med.bundle.manifest import BundleError
from unet_med.bundle.recognize import recognize_bundle
from unet_med.fl.job import (
    ALGO_ARGS,
    ALGO_PATH,
    APP_NAME,
    BUNDLE_IN_APP,
    JOB_EXPRESSIONS,
    NOISE_PATHS,
    SITE_KEYS,
    client_config,
    override_problems,
)

__all__ = ["SITE_TRUST_ENV", "RecognizedMonaiAlgo", "algo_problems", "check_job", "site_trusts_bundle_code"]

#: Set to ``1`` in a site's client environment to accept a job's bundle with custom code (never from the job).
SITE_TRUST_ENV = "UNET_MED_TRUST_BUNDLE_CODE"
_APP_CONFIGS = ("config_fed_client.json", "config_fed_server.json")
_CLIENT = f"{APP_NAME}/config/config_fed_client.json"


def site_trusts_bundle_code() -> bool:
    """Whether this process's environment accepts a bundle's custom code (``UNET_MED_TRUST_BUNDLE_CODE=1``)."""
    return os.environ.get(SITE_TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def algo_problems(args: Mapping[str, Any], where: str = "client_algo") -> list[str]:
    """What in ``RecognizedMonaiAlgo``'s arguments is not what ``unet-med fl job`` writes (``[]`` when all is).

    The fixed arguments must have the values the job writer gives them (the bundle folder, its two configs, the
    weight differences sent, checkpoint loading off); ``local_epochs`` is a positive integer; the two override sets
    are plain data, except the one expression the job writer sets itself, and do not choose where files go.
    """
    problems = []
    for key in sorted(set(args) - {"local_epochs", "train_kwargs", "eval_kwargs", *ALGO_ARGS}):
        problems.append(f"{where}: argument {key!r} is not one unet-med fl job writes")
    for key, expected in ALGO_ARGS.items():
        if key in args and args[key] != expected:
            problems.append(f"{where}: {key} is {args[key]!r}, not {expected!r}")
    epochs = args.get("local_epochs", 1)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        problems.append(f"{where}: local_epochs must be a positive integer, got {epochs!r}")
    for name in ("train_kwargs", "eval_kwargs"):
        kwargs = args.get(name) or {}
        if not isinstance(kwargs, Mapping):
            problems.append(f"{where}: {name} is not a mapping")
            continue
        problems += override_problems(kwargs, f"{where}: {name}", allowed=JOB_EXPRESSIONS.get(name, {}))
    return problems


def _job_parameters(client: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`client_config` arguments a client config states (KeyError/TypeError/StopIteration if malformed)."""
    component = next(c for c in client["components"] if c["id"] == "client_algo")
    algo = component["args"]
    executor = client["executors"][0]["executor"]["args"]
    exclude_regex, noise = None, None
    for data_filter in client["task_data_filters"]:
        for spec in data_filter["filters"]:
            exclude_regex = spec["args"]["exclude_vars"]
    kinds = {path: kind for kind, path in NOISE_PATHS.items()}
    for result_filter in client["task_result_filters"]:
        for spec in result_filter["filters"]:
            if spec["path"] in kinds:
                noise = {"kind": kinds[spec["path"]], **spec["args"]}
    site_free = {
        name: {k: v for k, v in algo[name].items() if k not in SITE_KEYS} for name in ("train_kwargs", "eval_kwargs")
    }
    return {
        "algo_path": component.get("path"),
        "algo": algo,
        "local_epochs": algo["local_epochs"],
        "train_overrides": site_free["train_kwargs"],
        "eval_overrides": site_free["eval_kwargs"],
        "exclude_regex": exclude_regex,
        "noise": noise,
        "key_metric": executor["key_metric"],
    }


def _app_layout(job: Path) -> list[str]:
    problems = []
    if not (job / "meta.json").is_file():
        problems.append("meta.json: missing")
    else:
        try:
            meta = json.loads((job / "meta.json").read_text(encoding="utf-8"))
            if set(meta.get("deploy_map") or {}) != {APP_NAME}:
                problems.append(f"meta.json: deploy_map must deploy the one app {APP_NAME!r}")
        except (ValueError, AttributeError, UnicodeDecodeError) as e:
            problems.append(f"meta.json: not a JSON object ({e})")
    for path in sorted(job.rglob("*")):
        rel = path.relative_to(job).as_posix()
        if path.is_symlink():
            problems.append(f"{rel}: a link")
        elif path.is_dir() or rel == "meta.json" or rel.startswith(f"{APP_NAME}/{BUNDLE_IN_APP}/"):
            continue
        elif rel not in {f"{APP_NAME}/config/{name}" for name in _APP_CONFIGS}:
            problems.append(f"{rel}: a file unet-med fl job does not write (code or configuration the site would run)")
    return problems


def check_job(job_dir: str | os.PathLike, trust_bundle_code: bool = False) -> list[str]:
    """Every reason the FLARE job folder ``job_dir`` is not what this site's ``unet-med fl job`` writes.

    Reads the job as data only: JSON and the bundle's bytes (:func:`unet_med.bundle.recognize.recognize_bundle`,
    weights not loaded: a site trains from the weights the server sends).

    Args:
        job_dir: a job folder (``meta.json``, ``app/``), as downloaded from the FLARE server or written by
            ``unet-med fl job``.
        trust_bundle_code: accept a bundle the installed template does not recognise; the job's other checks stay.

    Returns:
        One line per problem (``[]``: the site may run it).
    """
    job = Path(job_dir)
    if not (job / _CLIENT).is_file():
        return [f"{job}: no {_CLIENT}: not a job written by unet-med fl job"]
    problems = _app_layout(job)
    try:
        client = json.loads((job / _CLIENT).read_text(encoding="utf-8"))
        params = _job_parameters(client)
    except (ValueError, KeyError, TypeError, IndexError, StopIteration, UnicodeDecodeError) as e:
        return [*problems, f"{_CLIENT}: not a client config unet-med fl job writes ({type(e).__name__}: {e})"]
    algo, algo_path = params.pop("algo"), params.pop("algo_path")
    if algo_path != ALGO_PATH:
        problems.append(f"{_CLIENT}: client_algo is {algo_path!r}, not {ALGO_PATH} (which recognises the bundle)")
    found = algo_problems(algo, f"{_CLIENT}: client_algo")
    problems += found
    if not found:
        try:
            expected = client_config(**params)
        except (ValueError, KeyError, TypeError) as e:
            expected = {"error": str(e)}
        if json.loads(json.dumps(expected)) != client:
            problems.append(f"{_CLIENT}: differs from what unet-med fl job writes for its own parameters")
    bundle = recognize_bundle(job / APP_NAME / BUNDLE_IN_APP, weights=False)
    if not bundle.ok and not trust_bundle_code:
        problems += [f"{APP_NAME}/{BUNDLE_IN_APP}/{p}" for p in bundle.problems]
    return problems


class RecognizedMonaiAlgo(MonaiAlgo):
    """MONAI's ``MonaiAlgo`` that first recognises its bundle and checks its own arguments (see the module docs).

    Takes ``MonaiAlgo``'s arguments. ``initialize`` raises :class:`unet_med.bundle.manifest.BundleError` before any
    config is parsed when an argument is not what ``unet-med fl job`` writes, or when the bundle in the app folder
    is not what this site's installed template makes (unless the site sets ``UNET_MED_TRUST_BUNDLE_CODE=1``).
    """

    def __init__(self, bundle_root: str, local_epochs: int = 1, **kwargs: Any) -> None:
        self._job_args = copy.deepcopy({"bundle_root": bundle_root, "local_epochs": local_epochs, **kwargs})
        super().__init__(bundle_root=bundle_root, local_epochs=local_epochs, **kwargs)

    def initialize(self, extra: dict | None = None) -> None:
        app_root = (extra or {}).get(ExtraItems.APP_ROOT, "")
        bundle = Path(app_root) / str(self._job_args["bundle_root"])
        problems = algo_problems(self._job_args)
        if problems:
            raise BundleError(
                f"{bundle}: refused: the job's client arguments are not what unet-med fl job writes", problems
            )
        result = recognize_bundle(bundle, weights=False)
        if not result.ok and not site_trusts_bundle_code():
            raise BundleError(
                f"{bundle}: refused: the job's bundle is not what this site's unet_med template makes, so training "
                f"it would run code this site does not have; set {SITE_TRUST_ENV}=1 for the client to accept it",
                result.problems,
            )
        super().initialize(extra)
