"""Federated against centralised training of ``hippocampus_mri``, on the shared MSD hippocampus cases.

The bundle's fixed split (167 training, 41 validation cases) is kept. Its training cases go to 3 simulated sites:

- ``by-id``: three blocks of consecutive case ids (56 / 56 / 55 cases);
- ``uneven``: site-1 gets only 12 cases, with their intensities changed by a gamma of 0.6 (another scanner or
  protocol), sites 2 and 3 share the remaining 155.

With the same total epochs ``E`` (the same passes over the training cases, so the same training compute):

- ``centralised``: the bundle trained for ``E`` epochs on all 167 cases (``unet-med bundle run ... training``);
- ``fedavg``: NVIDIA FLARE's simulator running the job ``unet-med fl job`` writes (FedAvg, MONAI's ``MonaiAlgo``),
  ``E`` rounds of one local epoch per site; each simulated site gets its own app whose datalist holds only its
  cases (in a real federation each site sets ``UNET_MED_DATASET_DIR`` / ``UNET_MED_DATALIST_FILE`` instead);
- ``fedopt`` (``--aggregations fedopt``): the same job with the mean update taken as a server SGD step with
  momentum (``--server-lr``, ``--server-momentum``; FLARE's FedOpt);
- ``site-k alone``: the bundle trained for ``E`` epochs on site k's cases only.

Every model is then scored the same way: the bundle's ``evaluating`` workflow on the 41 validation cases (mean
Dice of the two classes). Wall time per run and per FedAvg round, and the bytes a site sends per round (the float32
weight differences ``MonaiAlgo`` returns) are recorded.

Usage (in a venv with the ``fl`` extra, e.g. the one docs/federated.md describes)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_federated.py --epochs 10 --json bench_federated.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_federated.py --epochs 8 --aggregations fedopt \
        --skip-centralised --skip-alone --json bench_federated_fedopt.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("UNET_MED_SHARED", REPO.parent / "shared")) / "data" / "Task04_Hippocampus"
BUNDLE = REPO / "bundles" / "hippocampus_mri"  # copied once into the work folder: every run starts from that copy
SITES = ("site-1", "site-2", "site-3")


def _split(training: list[dict[str, Any]], kind: str, work: Path) -> dict[str, list[dict[str, Any]]]:
    cases = sorted(training, key=lambda c: c["image"])
    if kind == "by-id":
        thirds = np.array_split(np.arange(len(cases)), 3)
        return {site: [cases[i] for i in idx] for site, idx in zip(SITES, thirds)}
    small = cases[:: len(cases) // 12][:12]
    rest = [c for c in cases if c not in small]
    shifted = []
    (work / "shifted").mkdir(parents=True, exist_ok=True)
    for case in small:
        img = nib.load(case["image"])
        data = np.asarray(img.dataobj, dtype=np.float32)
        top = max(float(data.max()), 1e-6)
        out = work / "shifted" / Path(case["image"]).name
        nib.save(nib.Nifti1Image((top * (np.clip(data, 0, None) / top) ** 0.6).astype(np.float32), img.affine), out)
        shifted.append({"image": str(out), "label": case["label"]})
    return {"site-1": shifted, "site-2": rest[::2], "site-3": rest[1::2]}


def _datalist(path: Path, training: list[dict[str, Any]], validation: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"training": training, "validation": validation}, indent=1))
    return path


def _source(work: Path) -> Path:
    """The bundle as it was when the benchmark started (the repository may change while it runs)."""
    source = work / "source" / BUNDLE.name
    if not source.is_dir():
        # configs and the one model a plain run writes; a shipped fold ensemble's other members stay behind
        shutil.copytree(BUNDLE, source, ignore=shutil.ignore_patterns("runs", ".cache", "last.pt", "model_fold*.pt"))
    return source


def _bundle_copy(work: Path, name: str) -> Path:
    dest = work / "bundles" / name
    shutil.copytree(_source(work), dest)
    return dest


def _evaluate(bundle: Path, datalist: Path) -> float:
    from unet_med.bundle.run import run_bundle

    # each run's one model, also where the bundle ships a fold ensemble (inference.ensemble > 1)
    overrides = {"dataset_dir": str(DATA), "datalist_file": str(datalist), "device": "cpu", "ensemble": 1}
    run_bundle(bundle, "evaluating", overrides)
    summary = json.loads((bundle / "runs" / "eval" / "summary.json").read_text())
    return float(summary["mean_dice"])


def _train(work: Path, name: str, datalist: Path, epochs: int) -> dict[str, Any]:
    from unet_med.bundle.run import run_bundle

    bundle = _bundle_copy(work, name)
    overrides = {"dataset_dir": str(DATA), "datalist_file": str(datalist), "max_epochs": epochs,
                 "val_interval": epochs, "device": "cpu"}  # fmt: skip
    start = time.perf_counter()
    run_bundle(bundle, "training", overrides)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "bundle": bundle}


def _federated(
    work: Path, splits: dict[str, list], validation: list, epochs: int, label: str, server: dict[str, Any]
) -> dict[str, Any]:
    import torch

    from unet_med.fl import export_global_model, simulate, write_job

    job = work / f"job_{label}"
    # from a random initialisation, as the centralised and single-site runs (not from the shipped weights)
    options = {"local_epochs": 1, "train_timeout": 3600, "start_from_weights": False, **server}
    write_job(_source(work), job, sites=len(SITES), rounds=epochs, **options)
    # one app per simulated site, whose datalist names only that site's cases (a real site sets its environment)
    meta = json.loads((job / "meta.json").read_text())
    shares = np.array_split(np.arange(len(validation)), len(SITES))
    for site, share in zip(SITES, shares):
        app = job / f"app_{site}"
        shutil.copytree(job / "app", app)
        site_list = _datalist(work / f"{label}_{site}_fl.json", splits[site], [validation[i] for i in share])
        client = app / "config" / "config_fed_client.json"
        config = json.loads(client.read_text())
        (algo,) = [c for c in config["components"] if c["id"] == "client_algo"]
        for kwargs in (algo["args"]["train_kwargs"], algo["args"]["eval_kwargs"]):
            kwargs.update(dataset_dir=str(DATA), datalist_file=str(site_list))
        client.write_text(json.dumps(config, indent=2))
    meta["deploy_map"] = {"app": ["server"], **{f"app_{site}": [site] for site in SITES}}
    (job / "meta.json").write_text(json.dumps(meta, indent=2))

    start = time.perf_counter()
    result = simulate(job, work / f"ws_{label}", sites=list(SITES), threads=len(SITES), timeout=4 * 3600)
    seconds = time.perf_counter() - start
    bundle = export_global_model(
        result.workspace, _source(work), work / "bundles" / f"fed_{label}", epochs, list(SITES)
    )
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    sent = sum(v.numel() * 4 for v in state.values() if v.is_floating_point())
    return {"seconds": seconds, "seconds_per_round": seconds / epochs, "bytes_sent_per_site_per_round": sent,
            "bundle": bundle}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs = FedAvg rounds of one local epoch")
    parser.add_argument("--splits", nargs="+", default=["by-id", "uneven"], choices=["by-id", "uneven"])
    parser.add_argument("--aggregations", nargs="+", default=["fedavg"], choices=["fedavg", "fedopt"])
    parser.add_argument("--server-lr", type=float, default=1.0, help="fedopt: server step size")
    parser.add_argument("--server-momentum", type=float, default=0.6, help="fedopt: server momentum")
    parser.add_argument("--skip-alone", action="store_true", help="skip the single-site runs")
    parser.add_argument("--skip-centralised", action="store_true", help="skip the centralised run")
    parser.add_argument("--skip-federated", action="store_true", help="skip the federated runs (single sites only)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 2
    from unet_med.data.datalist import read_datalist

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_federated_"))
    work.mkdir(parents=True, exist_ok=True)
    fixed = read_datalist(_source(work) / "configs" / "datalist.json", base_dir=DATA)
    training, validation = fixed["training"], fixed["validation"]
    report: dict[str, Any] = {
        "epochs": args.epochs,
        "training_cases": len(training),
        "validation_cases": len(validation),
    }
    full = _datalist(work / "full.json", training, validation)
    if not args.skip_centralised:
        run = _train(work, "centralised", full, args.epochs)
        report["centralised"] = {"seconds": run["seconds"], "val_mean_dice": _evaluate(run["bundle"], full)}
        print(f"centralised: {report['centralised']}", flush=True)
    for kind in args.splits:
        splits = _split(training, kind, work)
        entry: dict[str, Any] = {"cases": {s: len(c) for s, c in splits.items()}}
        for aggregation in [] if args.skip_federated else args.aggregations:
            server: dict[str, Any] = {"aggregation": aggregation}
            if aggregation == "fedopt":
                server.update(server_lr=args.server_lr, server_momentum=args.server_momentum)
            fed = _federated(work, splits, validation, args.epochs, f"{kind}_{aggregation}", server)
            entry[aggregation] = {**server, **{k: v for k, v in fed.items() if k != "bundle"}}
            entry[aggregation]["val_mean_dice"] = _evaluate(fed["bundle"], full)
            print(f"{kind} {aggregation}: {entry[aggregation]}", flush=True)
        if not args.skip_alone:
            for site in SITES:
                site_list = _datalist(work / f"{kind}_{site}.json", splits[site], validation)
                alone = _train(work, f"{kind}_{site}", site_list, args.epochs)
                entry[f"{site} alone"] = {
                    "seconds": alone["seconds"],
                    "val_mean_dice": _evaluate(alone["bundle"], full),
                }
                print(f"{kind} {site} alone: {entry[f'{site} alone']}", flush=True)
        report[kind] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
