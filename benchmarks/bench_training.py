"""Training speed on CPU (and GPU when there is one): step throughput, time-to-accuracy, peak memory.

Sections (``--sections``, default all but ``tta``, which takes up to ~25 min per recipe):

- ``step``: patches/s of a training step (forward, ``DiceCELoss``, backward, ``AdamW`` step) of ours against
  MONAI's ``BasicUNet`` at equal widths and patch: ``BasicUNet(3, 1, 3, features=(16, 16, 32, 64, 128, 16))`` and
  ``UNet(3, 1, 3, features=(16, 16, 32, 64, 128))`` (BasicUNet's last up-sampling keeps its width, so equal widths
  need the first two equal) with BasicUNet's instance norm and LeakyReLU (the same
  function; weights copied and outputs checked), hippocampus patch 32x48x32, batch 4. Configurations: each net
  eager in fp32 and bf16 autocast, and ours the way the bundles train it (``unet_med.engines.CompiledInferer``
  inside ``unet_med.inference.AutocastInferer``: ``torch.compile``, bf16). Rounds are interleaved (order reversed
  every other round) after warm-up (compilation is reported separately); ratios are medians of per-round ratios.
- ``tta``: time-to-accuracy of the hippocampus bundle: ``python -m monai.bundle run training`` as a child process
  (the bundle's fixed split, ``configs/datalist.json``), wall time from its start until the validation mean Dice
  first reaches ``--target`` (0.88), for the committed recipe of a git revision (``--before REV``, "ours now")
  and the working tree's recipe ("ours after"). The Inductor cache is a fresh empty folder, so compilation is
  counted. The child's peak RSS is the peak memory of a 3D training run.
- ``gpu``: with CUDA, one training epoch (AMP) of the reference and hippocampus bundles, and inference of both
  bundles' shipped weights on a case, masks compared with CPU fp32; without CUDA it says "no GPU".

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_training.py --json bench_training.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_training.py --sections tta --recipes after \\
        --dataset_dir ../shared/data/Task04_Hippocampus
    python benchmarks/bench_training.py --quick   # smoke run of the step section, seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monai
import torch
from monai.inferers import SimpleInferer
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

from unet_med.engines import CompiledInferer
from unet_med.inference import AutocastInferer
from unet_med.networks import UNet

__all__ = ["main"]

logger = logging.getLogger("bench_training")
REPO = Path(__file__).resolve().parents[1]
HIPPOCAMPUS = REPO / "bundles" / "hippocampus_mri"
DICE_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- .*val_mean_dice: ([0-9.]+)")
BASIC_FEATURES = (16, 16, 32, 64, 128, 16)
OURS_FEATURES = (16, 16, 32, 64, 128)


# -- step throughput ----------------------------------------------------------------------------------------------


def _basic_key_to_ours(key: str) -> str:
    key = re.sub(r"^conv_0\.", "encoder.0.", key)
    for i in (1, 2, 3):
        key = re.sub(rf"^down_{i}\.convs\.", f"encoder.{i}.", key)
    key = re.sub(r"^down_4\.convs\.", "bridge.", key)
    for j, i in enumerate((4, 3, 2, 1)):
        key = re.sub(rf"^upcat_{i}\.upsample\.deconv\.", f"upsample.{j}.", key)
        key = re.sub(rf"^upcat_{i}\.convs\.", f"decoder.{j}.", key)
    key = re.sub(r"^final_conv\.", "head.", key)
    return re.sub(r"\.conv_(\d)\.", r".\1.", key)


def _nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    basic = BasicUNet(3, 1, 3, features=BASIC_FEATURES)
    ours = UNet(3, 1, 3, OURS_FEATURES, norm=["instance", {"affine": True}], act=["leakyrelu", {"negative_slope": 0.1}])
    ours.load_state_dict({_basic_key_to_ours(k): v for k, v in basic.state_dict().items()})
    x = torch.randn(1, 1, 32, 48, 32)
    with torch.no_grad():
        diff = (basic.eval()(x) - ours.eval()(x)).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"BasicUNet and UNet differ (max |diff| {diff}); the comparison would be unfair")
    return basic, ours


def _make_step(net: torch.nn.Module, inferer: Callable, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    net.train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(inferer(x, net), y)
        loss.backward()
        opt.step()

    return step


def bench_step(patch: tuple[int, ...], batch: int, rounds: int, channels_last: bool) -> dict[str, Any]:
    """Interleaved training-step timings; ``patches_per_s`` and ratios against BasicUNet."""
    import copy

    basic, ours = _nets()
    x = torch.randn(batch, 1, *patch)
    y = torch.randint(0, 3, (batch, 1, *patch))
    eager = SimpleInferer()
    cases: dict[str, Callable[[], None]] = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        cases[f"BasicUNet {precision}"] = _make_step(copy.deepcopy(basic), AutocastInferer(eager, bf16), x, y)
        cases[f"ours {precision}"] = _make_step(copy.deepcopy(ours), AutocastInferer(eager, bf16), x, y)
        compiled = AutocastInferer(CompiledInferer(SimpleInferer(), True, channels_last=channels_last), bf16)
        cases[f"ours {precision} compiled"] = _make_step(copy.deepcopy(ours), compiled, x, y)
    warmup = {}
    for name, step in cases.items():
        t0 = time.perf_counter()
        step()
        step()
        warmup[name] = time.perf_counter() - t0
        logger.info("warm-up %-22s %.1f s", name, warmup[name])
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            cases[name]()
            cases[name]()
            times[name].append((time.perf_counter() - t0) / 2)
    rows = {}
    for name in names:
        precision = "bf16" if "bf16" in name else "fp32"
        same = times[f"BasicUNet {precision}"]
        rows[name] = {
            "step_s": statistics.median(times[name]),
            "patches_per_s": batch / statistics.median(times[name]),
            "vs_basicunet_same_precision": statistics.median([b / t for b, t in zip(same, times[name])]),
            "vs_basicunet_fp32": statistics.median([b / t for b, t in zip(times["BasicUNet fp32"], times[name])]),
            "first_two_steps_s": warmup[name],
        }
        logger.info(
            "%-22s %.3f s/step %.1f patches/s  x%.2f vs BasicUNet same precision, x%.2f vs BasicUNet fp32",
            name,
            rows[name]["step_s"],
            rows[name]["patches_per_s"],
            rows[name]["vs_basicunet_same_precision"],
            rows[name]["vs_basicunet_fp32"],
        )
    return {"patch": list(patch), "batch": batch, "rounds": rounds, "channels_last": channels_last, "rows": rows}


# -- time to accuracy ---------------------------------------------------------------------------------------------


def _recipe_bundle(rev: str | None, workdir: Path) -> Path:
    """A bundle folder holding the hippocampus train.json of ``rev`` (``None``: the working tree)."""
    if rev is None:
        return HIPPOCAMPUS
    bundle = workdir / f"hippocampus_{rev}"
    (bundle / "configs").mkdir(parents=True, exist_ok=True)
    for name in ("train.json", "datalist.json", "logging.conf"):
        text = subprocess.run(
            ["git", "show", f"{rev}:bundles/hippocampus_mri/configs/{name}"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (bundle / "configs" / name).write_text(text)
    return bundle


def time_to_accuracy(
    bundle: Path, dataset_dir: str, target: float, workdir: Path, stop_at_target: bool, log_file: Path
) -> dict[str, Any]:
    """Runs the bundle's training in a child process; returns the time of every validation and of the target."""
    run_dir = workdir / f"run_{bundle.name}_{int(time.time())}"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(run_dir / "inductor"), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(bundle / "configs" / "train.json"),
        "--dataset_dir",
        dataset_dir,
        "--output_dir",
        str(run_dir / "runs"),
        "--ckpt_dir",
        str(run_dir / "models"),
        "--cache_dir",
        str(run_dir / "cache"),
    ]
    logger.info("running %s", " ".join(cmd))
    t0 = time.perf_counter()
    validations, reached = [], None
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            match = DICE_LINE.search(line)
            if match:
                elapsed = time.perf_counter() - t0
                epoch, dice = int(match.group(1)), float(match.group(2))
                validations.append({"epoch": epoch, "dice": dice, "elapsed_s": elapsed})
                logger.info("%s: epoch %d val_mean_dice %.4f at %.1f s", bundle.name, epoch, dice, elapsed)
                if reached is None and dice >= target:
                    reached = validations[-1]
                    if stop_at_target:
                        proc.terminate()
        rc = proc.wait()
    total = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # all children so far (peak: the largest one)
    peak_kb = usage.ru_maxrss
    return {
        "command": " ".join(cmd),
        "returncode": rc,
        "validations": validations,
        "target": target,
        "reached": reached,
        "wall_s": total,
        "peak_rss_mb_children_max": peak_kb / 1024,
        "cpu_s_children_total": usage.ru_utime + usage.ru_stime,
        "load_avg_end": os.getloadavg(),
        "log": str(log_file),
    }


# -- GPU ----------------------------------------------------------------------------------------------------------


def bench_gpu(dataset_dir: str | None, workdir: Path) -> dict[str, Any]:
    """One AMP training epoch per bundle and inference masks against CPU fp32; "no GPU" without CUDA."""
    if not torch.cuda.is_available():
        logger.info("gpu: no GPU (torch.cuda.is_available() is False); section skipped")
        return {"gpu": "no GPU"}
    import nibabel as nib
    import numpy as np
    from monai.bundle import ConfigWorkflow

    from unet_med.inference import Predictor, load_bundle

    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    for name, data in (("unet", None), ("hippocampus_mri", dataset_dir)):
        if name != "unet" and not data:
            out[name] = "skipped: no dataset"
            continue
        bundle, scratch = REPO / "bundles" / name, workdir / f"gpu_{name}"
        workflow = ConfigWorkflow(config_file=str(bundle / "configs" / "train.json"), workflow_type="train")
        overrides = {
            "max_epochs": 1,
            "val_interval": 1,
            "amp": True,
            "device": "$torch.device('cuda')",
            "dataset_dir": data or str(scratch / "demo"),
            "output_dir": str(scratch / "runs"),
            "ckpt_dir": str(scratch / "models"),
            "cache_dir": str(scratch / "cache"),
        }
        for key, value in overrides.items():
            workflow.parser[key] = value
        t0 = time.perf_counter()
        workflow.initialize()
        workflow.run()
        torch.cuda.synchronize()
        out[f"{name}_epoch_s"] = time.perf_counter() - t0  # includes caching the data and the compilation
        case = sorted(Path(overrides["dataset_dir"]).rglob("imagesTr/*.nii.gz"))[0]
        masks = {}
        for device, precision in (("cpu", "fp32"), ("cuda", "auto")):
            predictor = Predictor(load_bundle(bundle, device=device), device=device, precision=precision)
            result = predictor.predict_case(case, scratch / f"pred_{device}")
            if result.error:
                raise RuntimeError(result.error)
            masks[device] = np.asarray(nib.load(result.outputs[0]).dataobj)
            out[f"{name}_infer_{device}_s"] = result.seconds["total"]
        out[f"{name}_mask_voxels_equal"] = float((masks["cpu"] == masks["cuda"]).mean())
    return out


# -- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="step,gpu", help="comma-separated: step, tta, gpu")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 48, 32])
    parser.add_argument(
        "--no-channels-last", dest="channels_last", action="store_false", help="compiled rows in the default layout"
    )
    parser.add_argument("--dataset_dir", default=str(REPO.parent / "shared" / "data" / "Task04_Hippocampus"))
    parser.add_argument("--recipes", default="before,after", help="tta: comma-separated before, after")
    parser.add_argument("--before", default="cc3aeb2", help="git revision whose committed recipe is 'ours now'")
    parser.add_argument("--target", type=float, default=0.88)
    parser.add_argument("--run-to-end", action="store_true", help="tta: do not stop when the target is reached")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: small patch, 2 rounds, step only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_training_"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg_start": os.getloadavg(),
    }
    sections = ["step"] if args.quick else args.sections.split(",")
    if "step" in sections:
        patch = (16, 16, 16) if args.quick else tuple(args.patch)
        results["step"] = bench_step(patch, args.batch, 2 if args.quick else args.rounds, args.channels_last)
    if "tta" in sections:
        results["tta"] = {}
        for recipe in args.recipes.split(","):
            bundle = _recipe_bundle(args.before if recipe == "before" else None, workdir)
            results["tta"][recipe] = time_to_accuracy(
                bundle, args.dataset_dir, args.target, workdir, not args.run_to_end, workdir / f"tta_{recipe}.log"
            )
    if "gpu" in sections:
        results["gpu"] = bench_gpu(args.dataset_dir if Path(args.dataset_dir).is_dir() else None, workdir)
    results["load_avg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
