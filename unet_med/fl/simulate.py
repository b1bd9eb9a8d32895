"""Running a job in FLARE's simulator: the server and every site on this machine, each site in its own process.

The simulator runs as a child process (FLARE changes its working directory and starts more processes of its own),
with the workspace as its working directory, so nothing is written outside the workspace and the job's bundle
copies. The sites share this process's environment: they all read the same ``UNET_MED_DATASET_DIR`` (unset: each
site generates the demo set in its own copy of the bundle).

Example::

    result = simulate("jobs/unet_fedavg", "/tmp/fl_ws", sites=2, threads=2)
    result.global_model   # Path to FL_global_model.pt
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from unet_med.fl.deps import require_nvflare

__all__ = ["SimulationResult", "simulate"]

#: Where the simulator leaves the server's app folder, relative to the workspace.
SERVER_APP = Path("server") / "simulate_job" / "app_server"


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """What a simulator run left behind.

    Attributes:
        returncode: the simulator's exit status.
        workspace: the simulator workspace (one folder per site and ``server``).
        log: the simulator's combined output (``workspace/simulate.log``).
    """

    returncode: int
    workspace: Path
    log: Path

    @property
    def server_log(self) -> str:
        """The server's log text (empty when the server never started)."""
        path = self.workspace / "server" / "log.txt"
        return path.read_text(errors="replace") if path.is_file() else ""

    @property
    def global_model(self) -> Path | None:
        """The last global model the server saved, or ``None``."""
        path = self.workspace / SERVER_APP / "FL_global_model.pt"
        return path if path.is_file() else None


def _save_output(out: IO[bytes], log: Path) -> None:
    out.seek(0)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as f:
        shutil.copyfileobj(out, f)


def simulate(
    job_dir: str | os.PathLike,
    workspace: str | os.PathLike,
    sites: int | Sequence[str] = 2,
    threads: int | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> SimulationResult:
    """Runs ``job_dir`` in FLARE's simulator with ``sites`` sites and returns what it left.

    Args:
        job_dir: a job folder (:func:`unet_med.fl.write_job`).
        workspace: the simulator workspace; created if missing.
        sites: how many sites (named ``site-1`` ..) or their names.
        threads: sites training at once (default: all of them). Fewer threads than sites swap sites in and out of
            the worker processes, which MonaiAlgo supports but which rebuilds each site's workflow every round.
        timeout: seconds before the whole simulator process group is killed and ``TimeoutError`` raised.
        env: environment for the simulator (default: this process's).
        check: raise ``RuntimeError`` (with the end of the log) when the simulator exits non-zero.

    Raises:
        ImportError: NVIDIA FLARE is not installed (names the ``fl`` extra).
        TimeoutError: the run took longer than ``timeout``.
        RuntimeError: the simulator failed and ``check`` is true.
    """
    require_nvflare()
    job = Path(job_dir).resolve()
    ws = Path(workspace).resolve()
    if not (job / "meta.json").is_file():
        raise ValueError(f"{job}: not a FLARE job folder (no meta.json)")
    names = [f"site-{i + 1}" for i in range(sites)] if isinstance(sites, int) else list(sites)
    if not names:
        raise ValueError("at least one site is needed")
    ws.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nvflare.private.fed.app.simulator.simulator", str(job), "-w", str(ws)]
    command += ["-c", ",".join(names), "-t", str(threads or len(names))]
    log = ws / "simulate.log"
    # The simulator empties its workspace when it starts, so the output is kept aside and written there at the end.
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            command,
            cwd=ws,
            env=dict(os.environ if env is None else env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _save_output(out, log)
            raise TimeoutError(f"FLARE simulator still running after {timeout} s; see {log}") from None
        _save_output(out, log)
    result = SimulationResult(returncode=returncode, workspace=ws, log=log)
    if check and returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"FLARE simulator exited with status {returncode}; end of {log}:\n{tail}")
    return result
