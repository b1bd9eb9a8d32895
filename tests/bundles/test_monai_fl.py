"""MONAI FL's ``MonaiAlgo`` over the reference bundle, as a federated site runs it: no overrides, just the bundle
folder. One FedAvg round of two sites writes nothing outside the two bundle folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from monai.fl.client import MonaiAlgo
from monai.fl.utils.constants import ExtraItems, WeightType
from monai.fl.utils.exchange_object import ExchangeObject

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_two_site_fedavg_round_stays_in_the_bundle_folders(tmp_path, monkeypatch):
    workdir = tmp_path / "client_workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # where an FL client process would be started
    sites = []
    for name in ("site_a", "site_b"):
        bundle = tmp_path / name
        shutil.copytree(REPO / "bundles" / "unet", bundle, ignore=shutil.ignore_patterns("runs", ".cache", "last.pt"))
        sites.append((name, bundle))
    repo_bundle_before = _files(REPO / "bundles" / "unet")

    algos = []
    for name, bundle in sites:
        algo = MonaiAlgo(bundle_root=str(bundle), local_epochs=1)
        algo.initialize(extra={ExtraItems.CLIENT_NAME: name})
        algos.append(algo)
    start = {k: v.detach().clone() for k, v in algos[0].trainer.network.state_dict().items()}
    global_weights = {k: v.clone() for k, v in start.items()}

    updates = []
    for algo in algos:
        algo.train(data=ExchangeObject(weights=global_weights, weight_type=WeightType.WEIGHTS))
        update = algo.get_weights()
        assert update.weight_type == WeightType.WEIGHT_DIFF
        updates.append(update.weights)
    averaged = {k: start[k] + sum(u[k].float() for u in updates) / len(updates) for k in start}
    assert any(not torch.equal(averaged[k], start[k]) for k in start)
    metrics = algos[0].evaluate(data=ExchangeObject(weights=averaged, weight_type=WeightType.WEIGHTS)).metrics
    assert "val_mean_dice" in metrics

    assert list(workdir.iterdir()) == [], "nothing may be written into the client's working directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client_workdir", "site_a", "site_b"]
    for _, bundle in sites:
        assert (bundle / ".cache" / "demo3d").is_dir() and (bundle / "runs" / "datalist.json").is_file()
    assert _files(REPO / "bundles" / "unet") == repo_bundle_before
