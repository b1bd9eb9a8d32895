"""The reference bundle bundles/unet: train, resume, evaluate, infer, two ranks, bad input, model-zoo checks.

Every run uses tiny synthetic data and a tiny network through config overrides, and writes only under tmp_path.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out

from unet_med.data.datalist import DatasetError
from unet_med.data.task_match import TaskMismatchError
from unet_med.engines import CheckpointMismatchError

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unet"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
META = str(CONFIGS / "metadata.json")
RNG = np.random.default_rng(0)


def saved_epoch(path: Path) -> int:
    """The last completed epoch recorded in a ``last.pt`` (Ignite saves the iteration and the epoch length)."""
    trainer = torch.load(path, weights_only=True)["trainer"]
    return int(trainer["iteration"]) // int(trainer["epoch_length"])


def tiny(tmp: Path, **extra) -> dict:
    """Overrides for a seconds-long run: 6 small demo cases, a 3-level net with 4-32 features, 16^3 patches."""
    return {
        "bundle_root": str(BUNDLE),
        "output_dir": str(tmp / "runs"),
        "ckpt_dir": str(tmp / "models"),
        "cache_dir": str(tmp / "cache"),
        "demo": {"num_cases": 6, "shape": [32, 32, 24], "spacing": [1.2, 1.2, 2.5]},
        "features": [4, 8, 16, 32],
        "patch_size": [16, 16, 16],
        "batch_size": 2,
        "max_epochs": 2,
        "val_interval": 1,
        "device": "cpu",
        **extra,
    }


def workflow(configs: list[str], workflow_type: str, overrides: dict, run_id: str = "run") -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=configs, meta_file=META, logging_file=False, workflow_type=workflow_type, run_id=run_id, **overrides
    )
    wf.initialize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle trained for 2 epochs on tiny demo data with bf16 autocast (``amp`` on a CPU):
    (tmp folder, overrides, workflow). The default fp32 path runs in the subprocess tests."""
    tmp = tmp_path_factory.mktemp("unet_bundle")
    overrides = tiny(tmp, amp=True)
    wf = workflow([TRAIN], "train", overrides, run_id="training")
    wf.run()
    wf.finalize()
    return tmp, overrides, wf


def test_training_writes_checkpoints_logs_and_split(trained):
    tmp, _, wf = trained
    assert wf.parser.get_parsed_content("train#inferer").enabled  # bf16 autocast on the CPU
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    # validation ran and kept a Dice (ignite starts at -1); two epochs of a 4-32 net may still predict no
    # foreground at all, so 0.0 is a valid value here
    assert 0.0 <= evaluator.state.best_metric <= 1.0 and evaluator.state.best_metric_epoch in (1, 2)
    weights = torch.load(tmp / "models" / "model.pt", weights_only=True)
    assert "encoder.0.0.conv.weight" in weights and "head.weight" in weights
    last = torch.load(tmp / "models" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "trainer", "best_metric"} <= set(last)
    assert saved_epoch(tmp / "models" / "last.pt") == 2
    assert list((tmp / "runs" / "tensorboard").glob("events.out.tfevents.*"))
    split = json.loads((tmp / "runs" / "datalist.json").read_text())
    assert len(split["training"]) == 5 and len(split["validation"]) == 1
    assert not list((tmp / "models").glob(".*part*")), "temporary checkpoint files left behind"


def test_resume_continues_from_last_epoch_with_best_metric(trained, tmp_path, caplog):
    tmp, overrides, wf = trained
    best = wf.parser.get_parsed_content("validate#evaluator").state.best_metric
    resumed = workflow([TRAIN], "train", {**overrides, "resume": True, "max_epochs": 3}, run_id="training")
    trainer = resumed.parser.get_parsed_content("train#trainer")
    evaluator = resumed.parser.get_parsed_content("validate#evaluator")
    epochs_run = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs_run.append(e.state.epoch))
    with caplog.at_level(logging.INFO):
        resumed.run()
    assert epochs_run == [3], "a resumed run must continue after the last saved epoch"
    assert evaluator.state.best_metric >= best
    assert saved_epoch(tmp / "models" / "last.pt") == 3
    # one line says where the run resumes (not Ignite's "resuming from iteration 0, epoch 0" before the load)
    said = [r.getMessage() for r in caplog.records if "resum" in r.getMessage().lower()]
    assert len(said) == 1 and "after epoch 2" in said[0] and "training to epoch 3" in said[0], said


def test_resume_refuses_a_checkpoint_from_other_data_or_another_task(trained, tmp_path):
    tmp, overrides, _ = trained
    elsewhere = {**overrides, "resume": True, "max_epochs": 9, "output_dir": str(tmp_path / "runs")}
    other_task = {**elsewhere, "class_names": ["background", "liver", "tumour"]}
    other_data = {**elsewhere, "cache_dir": str(tmp_path / "cache"), "demo": {**overrides["demo"], "num_cases": 7}}
    before = (tmp / "models" / "last.pt").read_bytes()
    for changed, expected in ((other_task, "another task (class_names"), (other_data, "other data (5 training")):
        wf = workflow([TRAIN], "train", changed, run_id="training")
        with pytest.raises(Exception) as err:
            wf.run()
        (mismatch,) = [e for e in _chain(err.value) if isinstance(e, CheckpointMismatchError)]
        assert expected in str(mismatch) and "\n" not in str(mismatch)
        assert "--resume" in str(mismatch)
    assert (tmp / "models" / "last.pt").read_bytes() == before, "a refused resume must not touch the checkpoint"


def test_a_run_shorter_than_val_interval_still_saves_its_final_weights(tmp_path, caplog):
    wf = workflow([TRAIN], "train", tiny(tmp_path, max_epochs=1, val_interval=2), run_id="training")
    with caplog.at_level(logging.WARNING):
        wf.run()
    assert wf.parser.get_parsed_content("validate#evaluator").state.best_metric_epoch < 1  # no validation ran
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    network = wf.parser.get_parsed_content("network")
    # the saved weights are the network's own (one epoch of a tiny run may diverge: NaN equals NaN here)
    torch.testing.assert_close(weights["head.weight"], network.head.weight.detach(), equal_nan=True)
    assert any("final weights, epoch 1" in r.getMessage() for r in caplog.records)


def test_training_writes_into_the_run_folder_not_the_shipped_weights(repo_root):
    """The bundle's own models/model.pt is tracked: a run writes to runs/models (gitignored) instead."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("ckpt_dir") == f"{BUNDLE}/runs/models"
    assert parser.get_parsed_content("output_dir") == f"{BUNDLE}/runs"
    if shutil.which("git") and (repo_root / ".git").exists():
        paths = ["bundles/unet/runs/models/model.pt", "bundles/unet/runs/models/last.pt"]
        ignored = subprocess.run(["git", "check-ignore", *paths], cwd=repo_root, capture_output=True, text=True)
        assert ignored.stdout.split() == paths, "runs/ must be ignored by git"


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    wf = workflow([TRAIN], "train", tiny(tmp_path, resume=True), run_id="training")
    with pytest.raises(Exception) as err:
        wf.run()
    assert any(isinstance(e, FileNotFoundError) and "checkpoint not found" in str(e) for e in _chain(err.value))


def test_sigkill_then_resume_loses_at_most_one_epoch(tmp_path, repo_root):
    overrides = tiny(tmp_path, max_epochs=10000, val_interval=5000)  # never ends on its own before the Ctrl-C
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", TRAIN]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(args, cwd=repo_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "models" / "last.pt"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if last.exists() and saved_epoch(last) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"training exited early with {proc.returncode}")
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint after epoch 2 within the time limit")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = saved_epoch(last)  # loads: never half-written
    resumed = workflow([TRAIN], "train", {**overrides, "resume": True, "max_epochs": saved + 1}, run_id="training")
    trainer = resumed.parser.get_parsed_content("train#trainer")
    started = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    resumed.run()
    assert started == [saved + 1]


def test_evaluate_writes_per_case_metrics(trained, tmp_path):
    _, overrides, _ = trained
    wf = workflow(
        [TRAIN, str(CONFIGS / "evaluate.json")], "eval", {**overrides, "output_dir": str(tmp_path)}, run_id="evaluating"
    )
    wf.run()
    rows = list(csv.DictReader((tmp_path / "eval" / "metrics.csv").open()))
    assert [r["class_name"] for r in rows] == ["organ", "lesion"]  # one validation case, two foreground classes
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["num_cases"] == 1 and set(summary["classes"]) == {"organ", "lesion"}
    assert {"dice", "hd95_mm", "surface_dice"} <= set(summary["classes"]["organ"])


def test_inference_mask_overlays_input_voxel_for_voxel(trained, tmp_path, oblique_volume):
    _, overrides, _ = trained
    source = oblique_volume(tmp_path / "scan.nii.gz")  # 30x26x11, 0.8 x 0.9 x 3.3 mm, rotated, LPS
    assert nib.aff2axcodes(source.affine) == ("L", "P", "S")
    out = tmp_path / "masks"
    wf = workflow(
        [str(CONFIGS / "inference.json")],
        "infer",
        {**overrides, "input": str(tmp_path / "scan.nii.gz"), "output_dir": str(out)},
        run_id="inferring",
    )
    wf.run()
    assert [p.name for p in out.iterdir()] == ["scan_seg.nii.gz"]
    mask = nib.load(out / "scan_seg.nii.gz")
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
    assert nib.aff2axcodes(mask.affine) == ("L", "P", "S")
    values = np.unique(np.asarray(mask.dataobj))
    assert set(values.tolist()) <= {0, 1, 2}


def test_inference_on_missing_input_names_it(trained, tmp_path):
    _, overrides, _ = trained
    wf = workflow(
        [str(CONFIGS / "inference.json")],
        "infer",
        {**overrides, "input": str(tmp_path / "nope"), "output_dir": str(tmp_path)},
        run_id="inferring",
    )
    with pytest.raises(Exception) as err:
        wf.run()
    assert any("input not found" in str(e) and "nope" in str(e) for e in _chain(err.value))


def _write_case(folder: Path, name: str, image: np.ndarray, label: np.ndarray, affine=None) -> None:
    affine = np.diag([1.2, 1.2, 2.5, 1.0]) if affine is None else affine
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), folder / "imagesTr" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), folder / "labelsTr" / f"{name}.nii.gz")


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes (MONAI wraps errors raised while instantiating config components)."""
    chain: list[BaseException] = []
    while error is not None:
        chain.append(error)
        error = error.__cause__
    return chain


def _dataset_error(tmp_path: Path, dataset_dir: Path) -> str:
    with pytest.raises(Exception) as err:
        workflow([TRAIN], "train", tiny(tmp_path, dataset_dir=str(dataset_dir)), run_id="training")
    chain = _chain(err.value)
    errors = [c for c in chain if isinstance(c, DatasetError)]
    assert errors, f"expected a DatasetError, got {chain!r}"
    return str(errors[0])


def _msd_dataset(root: Path, modality: str, labels: dict[str, str], values: list[int]) -> Path:
    """A 4-case MSD folder whose dataset.json names ``modality`` and ``labels`` and whose labels hold ``values``."""
    shape = (16, 16, 8)
    entries = []
    for i in range(4):
        label = np.zeros(shape)
        for k, value in enumerate(values):
            label[k * 4 : k * 4 + 4] = value
        _write_case(root, f"case_{i}", RNG.random(shape) * 100, label)
        entries.append({"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"})
    doc = {"name": "t", "modality": {"0": modality}, "labels": labels, "training": entries}
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def test_dataset_contradicting_the_task_is_refused_in_one_line(tmp_path):
    """The 3-class MRI reference bundle on a 2-class CT set: refused before any work, unless overridden."""
    data = _msd_dataset(tmp_path / "ct", "CT", {"0": "background", "1": "tumour"}, [0, 1])
    with pytest.raises(Exception) as err:
        workflow([TRAIN], "train", tiny(tmp_path, dataset_dir=str(data)), run_id="training")
    (mismatch,) = [e for e in _chain(err.value) if isinstance(e, TaskMismatchError)]
    message = str(mismatch)
    assert "\n" not in message
    for part in ("modality CT, the task is MRI", "2 labels (background, tumour)", "class 2 (lesion)"):
        assert part in message
    assert "--allow_task_mismatch true" in message
    assert not (tmp_path / "models").exists() and not (tmp_path / "runs").exists()
    # an explicit override trains on it all the same
    wf = workflow([TRAIN], "train", tiny(tmp_path, dataset_dir=str(data), allow_task_mismatch=True), "training")
    assert len(wf.parser.get_parsed_content("datalist")["training"]) == 3


def test_missing_and_empty_dataset_dir_fail_at_initialisation(tmp_path):
    assert "not found" in _dataset_error(tmp_path, tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    assert "empty" in _dataset_error(tmp_path, tmp_path / "empty")
    assert not (tmp_path / "models").exists(), "nothing may be written before the data is checked"


def test_every_bad_file_is_listed_in_one_error(tmp_path):
    data = tmp_path / "data"
    shape = (16, 16, 8)
    good = np.zeros(shape)
    for i in range(3):
        _write_case(data, f"good_{i}", RNG.random(shape), good)
    _write_case(data, "bad_labels", RNG.random(shape), np.full(shape, 7))
    _write_case(data, "bad_shape", RNG.random(shape), np.zeros((16, 16, 9)))
    _write_case(data, "bad_affine", RNG.random(shape), good)
    nib.save(
        nib.Nifti1Image(good.astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])), data / "labelsTr" / "bad_affine.nii.gz"
    )
    _write_case(data, "truncated", RNG.random(shape), good)
    blob = (data / "imagesTr" / "truncated.nii.gz").read_bytes()
    (data / "imagesTr" / "truncated.nii.gz").write_bytes(blob[: len(blob) // 2])
    message = _dataset_error(tmp_path, data)
    for name in ("bad_labels", "bad_shape", "bad_affine", "truncated"):
        assert name in message
    assert "good_0" not in message
    assert not (tmp_path / "models").exists()


def test_wrong_channel_count_is_reported(tmp_path):
    data = tmp_path / "data"
    shape = (16, 16, 8)
    for i in range(2):
        _write_case(data, f"case_{i}", RNG.random((*shape, 2)), np.zeros(shape))
    assert "channel" in _dataset_error(tmp_path, data)


def test_model_zoo_checks_pass_offline(tmp_path, shared_dir):
    schema = shared_dir / "schemas" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip(f"schema not found: {schema}")
    verify_metadata(meta_file=META, filepath=str(schema))
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=TRAIN, n=2)
    weights = BUNDLE / "models" / "model.pt"
    if not weights.is_file():
        pytest.skip("no trained weights in bundles/unet/models")
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(weights),
        meta_file=META,
        config_file=TRAIN,
    )
    scripted = torch.jit.load(tmp_path / "model.ts")
    net = ConfigWorkflow(config_file=TRAIN, meta_file=META, logging_file=False, workflow_type="infer")
    net.initialize()
    eager = net.parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.rand(1, 1, 32, 32, 16)
    torch.testing.assert_close(scripted(x), eager.eval()(x))


def test_exact_command_from_repo_root_and_bundle_folder(tmp_path, repo_root):
    """`python -m monai.bundle run training --config_file ...` from both folders resolves the bundle root."""
    overrides = {k: v for k, v in tiny(tmp_path, max_epochs=1).items() if k != "bundle_root"}
    extra = []
    for key, value in overrides.items():
        extra += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for cwd, config in ((repo_root, "bundles/unet/configs/train.json"), (BUNDLE, "configs/train.json")):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "monai.bundle",
                "run",
                "training",
                "--config_file",
                config,
                *extra,
                "--output_dir",
                str(tmp_path / cwd.name),
            ],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (tmp_path / cwd.name / "datalist.json").is_file()
    from unet_med.bundle import locate_bundle_root

    assert locate_bundle_root(argv=["x", "run", "--config_file", "bundles/unet/configs/train.json"]) == str(BUNDLE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_cpu_ranks_train_with_gloo(tmp_path, repo_root):
    # 10 cases: 2 validation cases, one per rank
    overrides = tiny(tmp_path, max_epochs=1, demo={"num_cases": 10, "shape": [32, 32, 24], "spacing": [1.2, 1.2, 2.5]})
    args = [
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        f"['{TRAIN}','{CONFIGS / 'multi_gpu_train.json'}']",
    ]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}

    def launch() -> subprocess.CompletedProcess:
        # a free port each time: a fixed one fails when an earlier run still holds it
        port = f"--master_port={_free_port()}"
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", port]
        return subprocess.run(torchrun + args, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)

    result = launch()
    if result.returncode != 0 and "Signal 6 (SIGABRT)" in result.stderr:
        # In some full-suite runs on the 2-core machine a gloo rank aborted during the first iteration
        # ("terminate called without an active exception"); it never did when run alone. One more try; any other
        # failure, or a second abort, fails the test.
        result = launch()
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "models" / "last.pt").is_file()
    # only rank 0 writes: every TensorBoard event file comes from one process (the pid is in the name)
    events = list((tmp_path / "runs" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and len({p.name.split(".")[4] for p in events}) == 1


def test_short_run_on_msd_hippocampus(tmp_path, shared_dir):
    """Train one epoch on 8 real MSD Task04 cases named by a fixed datalist (3 classes, 1 mm, RAS)."""
    dataset = shared_dir / "data" / "Task04_Hippocampus"
    if not (dataset / "dataset.json").is_file():
        pytest.skip(f"Task04_Hippocampus not found in {dataset.parent}")
    from unet_med.data import load_datalist, write_datalist

    items = load_datalist(dataset)
    write_datalist(tmp_path / "split.json", items[:6], items[6:8])
    overrides = tiny(
        tmp_path,
        dataset_dir=str(dataset),
        datalist_file=str(tmp_path / "split.json"),
        class_names=["background", "anterior", "posterior"],
        pixdim=[1.0, 1.0, 1.0],
        max_epochs=1,
    )
    wf = workflow([TRAIN], "train", overrides, run_id="training")
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    assert 0.0 <= evaluator.state.best_metric <= 1.0
    assert (tmp_path / "models" / "model.pt").is_file()


def _bundle_command(config: str, overrides: dict) -> list[str]:
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return args


@pytest.mark.parametrize(
    ("bundle", "extra", "expected"),
    [
        ("hippocampus_mri", {}, "error: no dataset_dir given: this bundle trains on real data; pass --dataset_dir"),
        ("unet", {"device": "cuda"}, "error: --device cuda: no CUDA device is available"),
    ],
)
def test_a_run_that_cannot_start_says_why_in_one_line(bundle, extra, expected, tmp_path, repo_root):
    if extra.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    scratch = {"output_dir": str(tmp_path / "runs"), "ckpt_dir": str(tmp_path / "models"), "cache_dir": str(tmp_path)}
    config = f"bundles/{bundle}/configs/train.json"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    result = subprocess.run(
        _bundle_command(config, {**scratch, **extra}), cwd=repo_root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr[-3000:]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "models").exists()


def test_ctrl_c_stops_after_an_epoch_with_a_resume_hint(tmp_path, repo_root):
    overrides = tiny(tmp_path, max_epochs=10000, val_interval=5000)  # never ends on its own before the Ctrl-C
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        _bundle_command(TRAIN, overrides),
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a test run started in the background (nohup, some CI runners) ignores SIGINT,
        # the child inherits that, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last = tmp_path / "models" / "last.pt"
    try:
        deadline = time.monotonic() + 240
        while not (last.exists() and saved_epoch(last) >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no checkpoint after epoch 1 (exit status {proc.poll()})")
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, -signal.SIGINT)
    assert "Traceback" not in out + err, (out + err)[-3000:]
    line = err.strip().splitlines()[-1]
    epoch = saved_epoch(last)
    assert line.startswith(f"stopped after epoch {epoch} ("), line
    assert "resume with: python -m monai.bundle run training" in line and line.endswith("--resume true")
