"""FLARE's simulator on jobs from ``write_job``: two sites, one round, on a tiny copy of the reference bundle.

Needs the ``fl`` extra (skipped without it). Each run takes about 30 s on two CPU cores; the one that waits for a
dead site's timeout takes about 15 s more.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from fl_helpers import TINY, UNET

from unet_med.fl import simulate, write_job
from unet_med.fl.site import SITE_TRUST_ENV

pytestmark = pytest.mark.slow

#: Loaded by the site's bundle from the job's app/custom folder (on the site's PYTHONPATH): kills its own process,
#: the way a crash or an operator would, at the first training iteration of the site named ``victim``. It is custom
#: bundle code, so the job is written with ``trust_bundle_code`` and the sites accept it through their environment.
KILL_HOOK = """
import os
import signal
from pathlib import Path

from ignite.engine import Events


class KillSite:
    def __init__(self, bundle_root, victim):
        self.doomed = victim in Path(bundle_root).parts  # the simulator runs each site in a folder of its name

    def attach(self, engine):
        if self.doomed:
            engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: os.kill(os.getpid(), signal.SIGKILL))
"""


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def site_env(tmp_path: Path) -> dict[str, str]:
    """This environment with a fresh HOME and TMPDIR (to see whether anything writes there) and no data location."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNET_MED_DATA")}
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir()
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"), OMP_NUM_THREADS="1")
    return env


def test_two_sites_one_round(flare, tiny_bundle: Path, tmp_path: Path, monkeypatch):
    job = write_job(tiny_bundle, tmp_path / "job", sites=2, rounds=1, overrides=TINY, train_timeout=150)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    env = site_env(tmp_path)
    before = {p: tree(p) for p in (tiny_bundle, job, UNET)}

    start = time.monotonic()
    result = simulate(job, tmp_path / "ws", sites=2, timeout=170, env=env)
    elapsed = time.monotonic() - start
    assert elapsed < 180, f"simulation took {elapsed:.0f} s"

    # The global model moved away from the bundle's weights, in every tensor's shape and name.
    assert result.global_model is not None
    initial = torch.load(tiny_bundle / "models" / "model.pt", weights_only=True)
    final = torch.load(result.global_model, weights_only=True)["model"]
    assert sorted(final) == sorted(initial)
    assert all(torch.as_tensor(final[k]).shape == initial[k].shape for k in initial)
    assert any(not torch.equal(torch.as_tensor(final[k]).float(), initial[k].float()) for k in initial)
    # Both sites' updates were averaged, and each site's metrics reached the server's TensorBoard.
    log = result.server_log
    assert "Contribution from site-1 ACCEPTED" in log and "Contribution from site-2 ACCEPTED" in log
    assert "round 0: 2 of 2 site(s) contributed (site-1, site-2)" in log
    assert "aggregating 2 update(s) at round 0" in log
    tb = result.workspace / "server" / "simulate_job" / "tb_events"
    assert sorted(p.name for p in tb.iterdir()) == ["site-1", "site-2"]
    # Each site generated its demo data inside its own copy of the bundle, in the workspace.
    for site in ("site-1", "site-2"):
        bundle = result.workspace / site / "simulate_job" / f"app_{site}" / "config" / "bundle"
        assert (bundle / ".cache" / "demo3d" / "dataset.json").is_file()
        datalist = json.loads((bundle / "runs" / "datalist.json").read_text())
        assert Path(datalist["dataset_dir"]).is_relative_to(result.workspace)
    # Nothing was written anywhere else: working directory, HOME, TMPDIR, the bundles and the job are untouched.
    assert list(cwd.iterdir()) == []
    # (matplotlib keeps its font cache under HOME, and torch makes an empty folder in TMPDIR: caches, not data.)
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file() and "matplotlib" not in p.parts]
    assert written + [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()] == []
    assert {p: tree(p) for p in before} == before


def test_fedopt_without_momentum_gives_fedavg_global_model(flare, tiny_bundle: Path, tmp_path: Path):
    """FedOpt with server lr 1 and no momentum is FedAvg: same start (the bundle's weights), same global model. Its
    server optimizer must step the current global model, not the persistor's freshly initialised network."""
    finals = {}
    for aggregation in ("fedavg", "fedopt"):
        server = {"server_lr": 1.0, "server_momentum": 0.0} if aggregation == "fedopt" else {}
        job = write_job(
            tiny_bundle, tmp_path / aggregation, sites=2, rounds=2, aggregation=aggregation,
            overrides={**TINY, "amp": False},  # fp32 sites train deterministically: equal inputs, equal updates
            train_timeout=150, **server,
        )  # fmt: skip
        result = simulate(job, tmp_path / f"ws_{aggregation}", sites=2, timeout=170)
        assert result.global_model is not None
        finals[aggregation] = torch.load(result.global_model, weights_only=True)["model"]
        if aggregation == "fedopt":
            assert result.server_log.count("FedOpt (torch.optim.SGD") == 2
    initial = torch.load(tiny_bundle / "models" / "model.pt", weights_only=True)
    assert any(not torch.equal(finals["fedavg"][k].float(), initial[k].float()) for k in initial)
    for k in initial:
        torch.testing.assert_close(finals["fedopt"][k].float(), finals["fedavg"][k].float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("min_clients", [1, 2])
def test_a_killed_site_is_reported_and_min_clients_decides(flare, tiny_bundle: Path, tmp_path: Path, min_clients: int):
    """site-2's process dies at its first training step. With min_clients=1 the round is averaged over site-1
    alone; with min_clients=2 the server waits for the train timeout, then stops the job instead of averaging."""
    train = tiny_bundle / "configs" / "train.json"
    config = json.loads(train.read_text())
    config["kill"] = {"_target_": "fl_kill_hook.KillSite", "bundle_root": "@bundle_root", "victim": "site-2"}
    config["train"]["trainer"]["train_handlers"] = "$@train#handlers + [@kill]"
    train.write_text(json.dumps(config, indent=4))
    job = write_job(
        tiny_bundle,
        tmp_path / "job",
        sites=2,
        rounds=1,
        min_clients=min_clients,
        overrides=TINY,
        train_timeout=15,
        wait_time_after_min_received=1,
        trust_bundle_code=True,
    )
    (job / "app" / "custom").mkdir()
    (job / "app" / "custom" / "fl_kill_hook.py").write_text(KILL_HOOK)

    start = time.monotonic()
    env = {**site_env(tmp_path), SITE_TRUST_ENV: "1"}  # each site accepts the custom bundle code on purpose
    result = simulate(job, tmp_path / "ws", sites=2, timeout=150, env=env, check=False)
    assert time.monotonic() - start < 150

    log = result.server_log
    assert "round 0: 1 of 2 site(s) contributed (site-1); no update from site-2" in log
    if min_clients == 1:
        assert "aggregating 1 update(s) at round 0" in log
        assert result.global_model is not None
    else:
        assert "min_clients=2: stopping the job" in log
        assert "task train exit with status TaskCompletionStatus.TIMEOUT" in log
        assert result.global_model is None  # the round was not averaged, so nothing was persisted
