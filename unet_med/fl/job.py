"""Writing an NVIDIA FLARE job that trains a bundle across sites with MONAI's FL integration.

The job is FLARE's classic folder format, and every moving part is FLARE's or MONAI's own: the server runs
FLARE's ``ScatterAndGather`` (FedAvg) with the ``InTimeAccumulateWeightedAggregator``; each site runs
``monai_nvflare``'s ``ClientAlgoExecutor`` driving ``monai.fl.client.MonaiAlgo`` over the bundle, which sends
weight differences (through :class:`unet_med.fl.site.RecognizedMonaiAlgo`, which first recognises the bundle and
the job's arguments at the site). Only weights, weight differences and scalar metrics leave a site. ::

    JOB_DIR/
      meta.json                       name, min_clients, deploy_map {"app": ["@ALL"]}
      app/config/config_fed_server.json
      app/config/config_fed_client.json
      app/config/bundle/              configs/, docs/, licence, models/model.pt (when the job starts from it)

The bundle sits under ``app/config`` rather than ``app/custom``: FLARE treats any ``custom`` folder as code the
job brings (the "byoc" right a site may refuse), and a bundle is configuration that the ``unet_med`` installed at
each site runs.

Where each site's data lies never enters the job. The client config passes ``"dataset_dir":
"{$UNET_MED_DATASET_DIR}"`` and ``"datalist_file": "{$UNET_MED_DATALIST_FILE}"`` to the bundle; FLARE resolves
``{$NAME}`` from the environment of the site's own client process when the job is deployed there, and an unset
variable becomes ``null``, which the reference bundle reads as "generate the synthetic demo set".

Example::

    write_job("bundles/unet", "jobs/unet_fedavg", sites=2, rounds=20, local_epochs=2)
    write_job("bundles/unet", "jobs/unet_dp", sites=3, rounds=20, noise={"kind": "gaussian", "sigma": 0.5})
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unet_med.bundle.pack import bundle_files
from unet_med.bundle.recognize import require_recognized
from unet_med.utils.io import atomic_write_json

__all__ = [
    "ALGO_ARGS",
    "ALGO_PATH",
    "APP_NAME",
    "BUNDLE_IN_APP",
    "DATALIST_ENV",
    "DATASET_ENV",
    "JOB_EXPRESSIONS",
    "NOISE_ARGS",
    "NOISE_PATHS",
    "SITE_KEYS",
    "client_config",
    "layer_regex",
    "override_problems",
    "server_config",
    "write_job",
]

#: The one app of the job, deployed to the server and every site.
APP_NAME = "app"
#: Where the bundle lies inside the app folder.
BUNDLE_IN_APP = "config/bundle"
#: Environment variables a site sets before starting its FLARE client; FLARE puts them into the client config.
DATASET_ENV = "UNET_MED_DATASET_DIR"
DATALIST_ENV = "UNET_MED_DATALIST_FILE"
#: Arguments each privacy-noise filter accepts (besides ``kind``).
NOISE_ARGS: dict[str, tuple[str, ...]] = {
    "percentile": ("percentile", "gamma"),
    "svt": ("fraction", "epsilon", "noise_var", "gamma", "tau"),
    "gaussian": ("sigma", "clip", "seed"),
}
#: The FLARE filter each noise kind runs.
NOISE_PATHS = {
    "percentile": "nvflare.app_common.filters.percentile_privacy.PercentilePrivacy",
    "svt": "nvflare.app_common.filters.svt_privacy.SVTPrivacy",
    "gaussian": "unet_med.fl.filters.GaussianNoise",
}
#: Config ids each site sets (from its environment); the job writes placeholders only.
SITE_KEYS = ("dataset_dir", "datalist_file")
#: Config ids that say where a run writes; the bundle's own folder decides, never the job.
_WRITE_IDS = ("bundle_root", "output_dir", "ckpt_dir", "cache_dir")
#: The site component: MONAI's MonaiAlgo that first recognises the bundle and its own arguments.
ALGO_PATH = "unet_med.fl.site.RecognizedMonaiAlgo"
#: The fixed arguments of the site component (besides local_epochs and the two override sets).
ALGO_ARGS: dict[str, Any] = {
    "bundle_root": BUNDLE_IN_APP,
    "send_weight_diff": True,
    "config_train_filename": "configs/train.json",
    "config_evaluate_filename": ["configs/train.json", "configs/evaluate.json"],
}
#: The one config expression the job writes into the site's overrides: evaluation takes the global weights.
JOB_EXPRESSIONS: dict[str, dict[str, str]] = {"eval_kwargs": {"network": "$@network_def.to(@device)"}}
_SHAREABLE_GENERATOR = (
    "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"
)
_AGGREGATOR = "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator"
_STATS_EVENT = "analytix_log_stats"
_FED_PREFIX = "fed."


def layer_regex(layers: Sequence[str]) -> str:
    """A regex matching state-dict keys equal to, or inside, any of ``layers`` (``"head"`` matches ``head.weight``
    and ``head.conv.bias`` but not ``header.weight``)."""
    if not layers:
        raise ValueError("no layer names given")
    return "^(" + "|".join(re.escape(name.strip(".")) for name in layers) + r")(\.|$)"


def _code_in(value: Any) -> str | None:
    """Why ``value`` is not plain config data (an expression, reference, macro or component), or ``None``."""
    if isinstance(value, str):
        return f"{value[:40]!r} is an expression, reference or macro (code)" if value[:1] in ("$", "@", "%") else None
    if value is None or isinstance(value, (bool, int, float)):
        return None
    if isinstance(value, (list, tuple)):
        return next((why for why in map(_code_in, value) if why), None)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or key[:1] in ("_", "$", "@", "%"):
                return f"key {key!r} builds or refers to a component (code)"
            why = _code_in(item)
            if why:
                return why
        return None
    return f"a {type(value).__name__}, not JSON data"


def override_problems(
    overrides: Mapping[str, Any], where: str = "overrides", allowed: Mapping[str, Any] | None = None
) -> list[str]:
    """Why bundle ``overrides`` are not plain data a job may set (``[]`` when they are).

    An override id must be a plain id (``features``, ``lr_scheduler#T_max``; no ``_target_``-like part), not one
    that says where files go, and its value plain JSON data: no ``$`` expression, ``@`` reference, ``%`` macro or
    ``_target_`` anywhere inside. ``allowed`` names exact id/value pairs accepted anyway (the job's own expression).
    """
    problems = []
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or key[0] in "$@%" or any(p.startswith("_") for p in key.split("#")):
            problems.append(f"{where}: {key!r} is not a plain config id")
            continue
        if key in _WRITE_IDS:
            problems.append(f"{where}: {key}: where a run writes is decided by the bundle's folder, not the job")
        if allowed and key in allowed and value == allowed[key]:
            continue
        why = _code_in(value)
        if why:
            problems.append(f"{where}: {key}: {why}")
    return problems


def _site_kwargs(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dataset_dir": "{$" + DATASET_ENV + "}",
        "datalist_file": "{$" + DATALIST_ENV + "}",
        **overrides,
    }


def _schedule_overrides(train: Mapping[str, Any], total_epochs: int) -> dict[str, Any]:
    """Keeps the bundle's schedule whole across the federation.

    MonaiAlgo sets ``max_epochs`` to the local epochs of one round, so a scheduler with ``T_max: @max_epochs``
    would restart every round; it gets the federation's total epochs instead. The trainer's own validation
    handler is pushed past the last epoch: each round the executor validates the global model through
    ``evaluate.json`` (that is what the server's TensorBoard shows), and the bundle's early-stop handler only gets
    its trainer in the bundle's ``run`` list, which MonaiAlgo does not execute.
    """
    out: dict[str, Any] = {}
    scheduler = train.get("lr_scheduler")
    if isinstance(scheduler, Mapping) and "T_max" in scheduler:
        out["lr_scheduler#T_max"] = total_epochs
    if "val_interval" in train:
        out["val_interval"] = total_epochs + 1
    return out


def client_config(
    local_epochs: int,
    train_overrides: Mapping[str, Any],
    eval_overrides: Mapping[str, Any],
    exclude_regex: str | None = None,
    noise: Mapping[str, Any] | None = None,
    key_metric: str = "val_mean_dice",
) -> dict[str, Any]:
    """``config_fed_client.json``: ClientAlgoExecutor + MonaiAlgo over ``config/bundle``, MONAI's stats sender,
    and FLARE's filters on what leaves the site (``exclude_regex`` also keeps those layers out of the incoming
    global model, so they stay the site's own)."""
    algo_args = {
        **ALGO_ARGS,
        "local_epochs": local_epochs,
        "train_kwargs": _site_kwargs(train_overrides),
        "eval_kwargs": _site_kwargs(eval_overrides),
    }
    data_filters: list[dict[str, Any]] = []
    result_filters: list[dict[str, Any]] = []
    if exclude_regex:
        exclude = {
            "path": "nvflare.app_common.filters.exclude_vars.ExcludeVars",
            "args": {"exclude_vars": exclude_regex},
        }
        data_filters.append({"tasks": ["train", "validate"], "filters": [exclude]})
        result_filters.append(exclude)
    if noise:
        kind = noise["kind"]
        result_filters.append({"path": NOISE_PATHS[kind], "args": {k: v for k, v in noise.items() if k != "kind"}})
    return {
        "format_version": 2,
        "executors": [
            {
                # submit_model (a site's best local model, whole) is deliberately not served.
                "tasks": ["train", "validate"],
                "executor": {
                    "id": "executor",
                    "path": "monai_nvflare.client_algo_executor.ClientAlgoExecutor",
                    "args": {
                        "client_algo_id": "client_algo",
                        "stats_sender_id": "log_writer",
                        "key_metric": key_metric,
                    },
                },
            }
        ],
        "task_data_filters": data_filters,
        "task_result_filters": [{"tasks": ["train"], "filters": result_filters}] if result_filters else [],
        "components": [
            {"id": "client_algo", "path": ALGO_PATH, "args": algo_args},
            {
                "id": "log_writer",
                "path": "unet_med.fl.stats.NVFlareStatsHandler",
                "args": {"iteration_log": False, "tag_name": "train_loss"},
            },
            {
                "id": "event_to_fed",
                "path": "nvflare.app_common.widgets.convert_to_fed_event.ConvertToFedEvent",
                "args": {"events_to_convert": [_STATS_EVENT], "fed_event_prefix": _FED_PREFIX},
            },
        ],
    }


def server_config(
    rounds: int,
    min_clients: int,
    network_overrides: Mapping[str, Any],
    source_ckpt: str | None,
    train_timeout: int = 0,
    wait_time_after_min_received: int = 10,
    server_optimizer: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """``config_fed_server.json``: ScatterAndGather with the in-time weighted aggregator, the bundle persistor,
    the quorum check and the TensorBoard receiver for the sites' metrics. The global model takes the weighted mean
    update as it is (FedAvg), or, with ``server_optimizer`` (``{"lr": 1.0, "momentum": 0.6}``), through a server
    SGD step (FedOpt: :class:`unet_med.fl.fedopt.BundleFedOpt`)."""
    generator: dict[str, Any] = {"id": "shareable_generator", "path": _SHAREABLE_GENERATOR, "args": {}}
    if server_optimizer is not None:
        args = {"persistor_id": "persistor", **{k: float(v) for k, v in server_optimizer.items()}, "device": "cpu"}
        generator = {"id": "shareable_generator", "path": "unet_med.fl.fedopt.BundleFedOpt", "args": args}
    return {
        "format_version": 2,
        "task_data_filters": [],
        "task_result_filters": [],
        "components": [
            {
                "id": "persistor",
                "path": "unet_med.fl.persistor.BundlePersistor",
                "args": {
                    "bundle_root": BUNDLE_IN_APP,
                    "overrides": dict(network_overrides),
                    "source_ckpt_filename": source_ckpt,
                },
            },
            generator,
            {
                "id": "aggregator",
                "path": _AGGREGATOR,
                "args": {"expected_data_kind": "WEIGHT_DIFF"},
            },
            {"id": "quorum", "path": "unet_med.fl.quorum.RoundQuorum", "args": {"min_clients": min_clients}},
            {
                "id": "tb_receiver",
                "path": "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver",
                "args": {"events": [_FED_PREFIX + _STATS_EVENT]},
            },
        ],
        "workflows": [
            {
                "id": "scatter_and_gather",
                "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
                "args": {
                    "min_clients": min_clients,
                    "num_rounds": rounds,
                    "start_round": 0,
                    "wait_time_after_min_received": wait_time_after_min_received,
                    "aggregator_id": "aggregator",
                    "persistor_id": "persistor",
                    "shareable_generator_id": "shareable_generator",
                    "train_task_name": "train",
                    "train_timeout": train_timeout,
                },
            }
        ],
    }


def _weights_fit(bundle_dir: Path, weights: Path, overrides: Mapping[str, Any]) -> str | None:
    """``None`` when ``weights`` load into the bundle's ``network_def`` built with ``overrides``, else why not."""
    import torch

    from unet_med.bundle.export import bundle_parser
    from unet_med.engines.checkpoint import load_state_dict
    from unet_med.fl.export import weights_mismatch

    parser = bundle_parser(bundle_dir, [Path(bundle_dir) / "configs" / "train.json"])  # what the sites train
    parser.update(dict(overrides))
    net = parser.get_parsed_content("network_def")
    if not isinstance(net, torch.nn.Module):
        return f"network_def is a {type(net).__name__}, not a torch.nn.Module"
    state: Mapping[str, Any] = load_state_dict(weights)
    if "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    return weights_mismatch(net, state)


def _check_noise(noise: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if noise is None:
        return None
    kind = noise.get("kind")
    if kind not in NOISE_ARGS:
        raise ValueError(f"noise kind must be one of {sorted(NOISE_ARGS)}, got {kind!r}")
    unknown = sorted(set(noise) - {"kind", *NOISE_ARGS[kind]})
    if unknown:
        raise ValueError(f"{kind} noise takes {', '.join(NOISE_ARGS[kind])}; unknown: {', '.join(unknown)}")
    return dict(noise)


def write_job(
    bundle_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sites: int,
    rounds: int,
    local_epochs: int = 1,
    aggregation: str = "fedavg",
    server_lr: float = 1.0,
    server_momentum: float = 0.6,
    exclude_layers: Sequence[str] | None = None,
    noise: Mapping[str, Any] | None = None,
    min_clients: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    start_from_weights: bool | None = None,
    train_timeout: int = 0,
    wait_time_after_min_received: int = 10,
    key_metric: str = "val_mean_dice",
    name: str | None = None,
    trust_bundle_code: bool = False,
) -> Path:
    """Writes a FLARE job folder that trains ``bundle_dir`` with FedAvg (or FedOpt) across ``sites`` sites. Returns
    ``out_dir``.

    Args:
        bundle_dir: the bundle (``configs/train.json`` and ``configs/evaluate.json``; ``models/model.pt`` optional).
        out_dir: the job folder to create; it must not exist (or be empty).
        sites: how many sites the federation has (the default ``min_clients``).
        rounds: FedAvg rounds.
        local_epochs: epochs each site trains per round.
        aggregation: ``"fedavg"`` (the global model moves by the sites' weighted mean update) or ``"fedopt"``
            (that mean is a gradient for a server SGD step with ``server_lr`` and ``server_momentum``: FedAvgM, FLARE's
            FedOpt). FedProx is not offered: it needs a proximal term inside the bundle's loss, and neither FLARE
            (its ``PTFedProxLoss`` is a loss to call from your own loop) nor MONAI's ``MonaiAlgo`` offers a component
            that adds it to a bundle's trainer.
        server_lr: the server step size (``"fedopt"`` only).
        server_momentum: the server momentum, in [0, 1) (``"fedopt"`` only).
        exclude_layers: state-dict prefixes (``["head"]``) that never leave a site and are never overwritten by
            the global model (FLARE's ``ExcludeVars`` on incoming and outgoing data): each site keeps its own.
        noise: a privacy filter on each update, ``{"kind": "percentile", "percentile": 10, "gamma": 0.01}`` or
            ``{"kind": "svt", ...}`` (FLARE's ``PercentilePrivacy`` / ``SVTPrivacy``), or
            ``{"kind": "gaussian", "sigma": 0.5, "clip": 1.0}`` (:class:`unet_med.fl.filters.GaussianNoise`).
        min_clients: the fewest sites a round may be aggregated from (default ``sites``); fewer stops the job.
        overrides: bundle config overrides for every site and the server's network (hyperparameters, a smaller
            network for a test). Data locations are refused: each site sets them.
        start_from_weights: start from ``models/model.pt``: ``None`` when it exists and fits the network built
            with ``overrides``, ``True`` to insist (error otherwise), ``False`` for a random start.
        train_timeout: seconds the server waits for a round's updates (0: no limit; FLARE's dead-client detection
            still ends the wait when a provisioned site's job process dies; the simulator has none, so set it there).
        wait_time_after_min_received: seconds the server waits for late sites once ``min_clients`` have answered.
        key_metric: the validation metric each site reports before training.
        name: the job name (default: the bundle folder's name + ``_`` + ``aggregation``).
        trust_bundle_code: write a job for a bundle the installed template does not recognise (custom code).

    Raises:
        ValueError: a bad count, aggregation, noise or override, or weights that must fit and do not.
        BundleError: the bundle is not what the installed template makes (every site would run its configs) and
            ``trust_bundle_code`` is not set.
        FileExistsError: ``out_dir`` exists and is not empty.
    """
    bundle = Path(bundle_dir).resolve()
    out = Path(out_dir)
    for label, value in (("sites", sites), ("rounds", rounds), ("local_epochs", local_epochs)):
        if int(value) < 1:
            raise ValueError(f"{label} must be at least 1, got {value}")
    min_clients = int(sites) if min_clients is None else int(min_clients)
    if not 1 <= min_clients <= int(sites):
        raise ValueError(f"min_clients must lie in 1..{sites} (the number of sites), got {min_clients}")
    if aggregation not in ("fedavg", "fedopt"):
        raise ValueError(
            f"aggregation {aggregation!r} is not available: 'fedavg' or 'fedopt' (FedProx needs a proximal term in "
            "the bundle's loss, which neither FLARE nor MONAI's MonaiAlgo provides as a component)"
        )
    if not (server_lr > 0 and 0 <= server_momentum < 1):
        raise ValueError(f"server_lr must be > 0 and server_momentum in [0, 1), got {server_lr}, {server_momentum}")
    if train_timeout < 0 or wait_time_after_min_received < 0:
        raise ValueError("train_timeout and wait_time_after_min_received must be >= 0")
    noise = _check_noise(noise)
    overrides = dict(overrides or {})
    reserved = sorted(set(overrides) & set(SITE_KEYS))
    if reserved:
        raise ValueError(
            f"overrides may not set {', '.join(reserved)}: each site sets its data through {DATASET_ENV} / "
            f"{DATALIST_ENV}"
        )
    problems = override_problems(overrides)
    if problems:  # every site refuses such a job (unet_med.fl.site): say so here
        raise ValueError("overrides must be plain data a site accepts:\n  - " + "\n  - ".join(problems))
    for required in ("configs/train.json", "configs/evaluate.json", "configs/metadata.json"):
        if not (bundle / required).is_file():
            raise ValueError(f"{bundle}: {required} not found")
    require_recognized(bundle, trust_bundle_code=trust_bundle_code, weights=False)  # every site would run it
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty")

    weights = bundle / "models" / "model.pt"
    use_weights = False
    if start_from_weights is not False and weights.is_file():
        problem = _weights_fit(bundle, weights, overrides)
        if problem and start_from_weights:
            raise ValueError(f"{weights} does not fit the network built with the overrides: {problem}")
        use_weights = problem is None
    elif start_from_weights:
        raise ValueError(f"start_from_weights=True but {weights} does not exist")

    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    total_epochs = int(rounds) * int(local_epochs)
    train_overrides = {**_schedule_overrides(train, total_epochs), **overrides}
    # The global weights come from the server each round, so evaluate.json's load of models/model.pt is skipped.
    eval_overrides = {"network": "$@network_def.to(@device)", **overrides}

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        config = stage / APP_NAME / "config"
        for src in bundle_files(bundle):
            dst = stage / APP_NAME / BUNDLE_IN_APP / src.relative_to(bundle)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        if use_weights:
            dst = stage / APP_NAME / BUNDLE_IN_APP / "models" / "model.pt"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(weights, dst)
        atomic_write_json(
            config / "config_fed_server.json",
            server_config(
                int(rounds),
                min_clients,
                overrides,
                "models/model.pt" if use_weights else None,
                train_timeout=int(train_timeout),
                wait_time_after_min_received=int(wait_time_after_min_received),
                server_optimizer=({"lr": server_lr, "momentum": server_momentum} if aggregation == "fedopt" else None),
            ),
        )
        atomic_write_json(
            config / "config_fed_client.json",
            client_config(
                int(local_epochs),
                train_overrides,
                eval_overrides,
                exclude_regex=layer_regex(exclude_layers) if exclude_layers else None,
                noise=noise,
                key_metric=key_metric,
            ),
        )
        atomic_write_json(
            stage / "meta.json",
            {
                "name": name or f"{bundle.name}_{aggregation}",
                "resource_spec": {},
                "min_clients": min_clients,
                "deploy_map": {APP_NAME: ["@ALL"]},
            },
        )
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out
