"""``unet-med fl`` commands: federated training of a bundle across sites with NVIDIA FLARE.

- ``unet-med fl job BUNDLE --sites N --rounds R [--local-epochs E] [--aggregation fedavg|fedopt]
  [--server-lr LR] [--server-momentum M] [--exclude-layers L ...]
  [--noise percentile|svt|gaussian [--noise-arg K=V ...]] [--min-clients M] [--train-timeout S]
  [--override KEY=JSON ...] --out JOB_DIR``: write a FLARE job folder.
- ``unet-med fl simulate JOB_DIR --workspace WS [--sites N] [--threads T] [--timeout S]``: run it in FLARE's
  simulator on this machine (needs the ``fl`` extra: ``pip install -e '.[fl]'`` in the clone).
- ``unet-med fl export WORKSPACE_OR_MODEL BUNDLE OUT --rounds R --sites N|NAME,NAME``: the global model as a bundle.
- ``unet-med fl check JOB_DIR [--trust-bundle-code]``: at a site, before running a received job: is it exactly what
  this site's ``unet-med fl job`` writes (exit 1 and one line per difference otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b=[4, 8]"]`` -> ``{"a": 1, "b": [4, 8]}``; a value that is not JSON stays a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must look like KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _job(args: argparse.Namespace) -> int:
    from unet_med.bundle.manifest import BundleError
    from unet_med.fl.job import write_job

    try:
        noise_args = _pairs(args.noise_arg, "--noise-arg")
        if noise_args and not args.noise:
            raise ValueError("--noise-arg needs --noise")
        out = write_job(
            args.bundle,
            args.out,
            sites=args.sites,
            rounds=args.rounds,
            local_epochs=args.local_epochs,
            aggregation=args.aggregation,
            server_lr=args.server_lr,
            server_momentum=args.server_momentum,
            exclude_layers=args.exclude_layers,
            noise={"kind": args.noise, **noise_args} if args.noise else None,
            min_clients=args.min_clients,
            overrides=_pairs(args.override, "--override"),
            train_timeout=args.train_timeout,
        )
    except (BundleError, FileExistsError, ValueError, TypeError) as e:
        print(e, file=sys.stderr)
        return 1
    print(out)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from unet_med.fl.simulate import simulate

    sites: int | list[str] = int(args.sites) if args.sites.isdigit() else args.sites.split(",")
    try:
        result = simulate(args.job, args.workspace, sites=sites, threads=args.threads, timeout=args.timeout)
    except (ImportError, RuntimeError, TimeoutError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    print(result.global_model or f"no global model was saved; see {result.log}")
    return 0 if result.global_model else 1


def _export(args: argparse.Namespace) -> int:
    from unet_med.fl.export import export_global_model

    sites: int | list[str] = int(args.sites) if args.sites.isdigit() else args.sites.split(",")
    try:
        out = export_global_model(args.source, args.bundle, args.out, rounds=args.rounds, sites=sites, bump=args.bump)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    print(out)
    return 0


def _check(args: argparse.Namespace) -> int:
    from unet_med.fl.site import check_job

    problems = check_job(args.job, trust_bundle_code=args.trust_bundle_code)
    if problems:
        print(
            f"{args.job}: not a job this site's unet-med fl job writes; running it would run code this site does "
            "not have:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    trusted = " (its custom code accepted with --trust-bundle-code)" if args.trust_bundle_code else ""
    print(
        f"{args.job}: recognised. Checked:\n"
        "  - meta.json deploys the one app, and the app holds only the files unet-med fl job writes\n"
        "  - config_fed_client.json is exactly what this site's unet-med fl job writes for the job's own parameters\n"
        "    (rounds, local epochs, aggregation, privacy filters, overrides), with the client algorithm that\n"
        "    recognises the bundle again before every run\n"
        f"  - the bundle in the app is what this site's template makes from its task description{trusted}\n"
        "Not checked here: config_fed_server.json (it runs on the server) and the bundle's weights (a site trains\n"
        "from the weights the server sends)."
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fl job|simulate|export|check`` to the ``unet-med`` command line."""
    fl = subparsers.add_parser("fl", help="federated training across sites with NVIDIA FLARE")
    commands = fl.add_subparsers(dest="fl_command", required=True)

    job = commands.add_parser("job", help="write a FLARE job that trains a bundle with FedAvg")
    job.add_argument("bundle", help="bundle folder")
    job.add_argument("--out", required=True, help="job folder to create")
    job.add_argument("--sites", type=int, required=True, help="number of sites in the federation")
    job.add_argument("--rounds", type=int, required=True, help="FedAvg rounds")
    job.add_argument("--local-epochs", type=int, default=1, help="epochs each site trains per round")
    job.add_argument(
        "--aggregation",
        default="fedavg",
        choices=["fedavg", "fedopt"],
        help="fedavg, or fedopt: the mean update through a server SGD step (FedProx has no bundle component)",
    )
    job.add_argument("--server-lr", type=float, default=1.0, help="fedopt: server step size (default 1.0)")
    job.add_argument("--server-momentum", type=float, default=0.6, help="fedopt: server momentum (default 0.6)")
    job.add_argument("--exclude-layers", nargs="+", default=None, help="layers that stay at each site (e.g. head)")
    job.add_argument("--noise", choices=["percentile", "svt", "gaussian"], default=None, help="privacy filter")
    job.add_argument("--noise-arg", action="append", help="filter argument KEY=VALUE, e.g. sigma=0.5 (repeatable)")
    job.add_argument("--min-clients", type=int, default=None, help="fewest sites per round (default: --sites)")
    job.add_argument("--train-timeout", type=int, default=0, help="seconds the server waits for a round (0: none)")
    job.add_argument("--override", action="append", help="bundle override KEY=JSON for all sites (repeatable)")
    job.set_defaults(func=_job)

    sim = commands.add_parser("simulate", help="run a job in FLARE's simulator on this machine")
    sim.add_argument("job", help="job folder")
    sim.add_argument("--workspace", required=True, help="simulator workspace folder")
    sim.add_argument("--sites", default="2", help="number of sites, or their names separated by commas")
    sim.add_argument("--threads", type=int, default=None, help="sites training at once (default: all)")
    sim.add_argument("--timeout", type=float, default=None, help="seconds before the simulator is killed")
    sim.set_defaults(func=_simulate)

    export = commands.add_parser("export", help="write the global model as a new bundle version")
    export.add_argument("source", help="FL_global_model.pt, or a folder holding one (workspace, job result)")
    export.add_argument("bundle", help="the bundle the job was written from")
    export.add_argument("out", help="new bundle folder")
    export.add_argument("--rounds", type=int, required=True, help="rounds the federation ran")
    export.add_argument("--sites", required=True, help="number of sites, or their names separated by commas")
    export.add_argument("--bump", choices=["major", "minor", "patch"], default="minor", help="version part to raise")
    export.set_defaults(func=_export)

    check = commands.add_parser("check", help="at a site: is a received job what this unet-med writes")
    check.add_argument("job", help="job folder (as downloaded from the FLARE server)")
    check.add_argument(
        "--trust-bundle-code", action="store_true", help="accept a bundle with custom code (other checks stay)"
    )
    check.set_defaults(func=_check)
