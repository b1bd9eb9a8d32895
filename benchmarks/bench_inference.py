"""Whole-volume inference speed and memory: ``unet-med predict``'s pipeline against MONAI's default path, on CPU.

Compared on the same volume, window (96^3) and overlap (0.5), batch of 4 windows:

- ``monai``: ``monai.inferers.sliding_window_inference`` (its defaults otherwise: constant blending) over
  ``BasicUNet(3, 1, 2, features=(32, 32, 64, 128, 256, 32))`` in fp32 under ``torch.no_grad``, then argmax. The
  volume is already in memory; loading and writing are not timed.
- ``monai-bundle-run``: the same bundle's ``configs/inference.json`` through MONAI's own runner
  (``monai.bundle run``), which runs the same inferer and post-processing components as ``ours``; timed from the
  command's start (parsing the config, building the workflow) to the mask on disk.
- ``ours-fp32`` and ``ours``: :class:`unet_med.inference.Predictor` (what ``unet-med predict`` runs for each case)
  from a temporary bundle whose ``network_def`` is the same network (``UNet`` with BasicUNet's widths, instance
  norm and LeakyReLU; BasicUNet's weights copied in), in fp32 and with the default precision (bf16 on this CPU).
  Timed from the file on disk to the mask on disk: load, preprocessing, Gaussian sliding window, argmax, inverse,
  write.

``ours`` against ``ours-fp32`` gives the precision gain; ``ours-fp32`` against ``monai`` the pipeline's gain (the
glibc allocator setting, inference mode, buffers). Each configuration runs in its own fresh process, one after the
other (not interleaved), which reports its peak resident memory (``ru_maxrss``) and the time spent inside the
network's ``forward`` (hooks). The network's achieved rate is the counted FLOPs (``FlopCounterMode``: convolutions
at 2 FLOPs per multiply-add) times the windows run, over that time; the script also measures the machine's bf16
and fp32 matrix-multiply rates (4096^2 ``torch.mm``) to put it against.

Also measured: the peak resident memory of ``unet-med predict`` with the reference bundle on a synthetic
512x512x300 CT (0.8 x 0.8 x 1.0 mm), and the agreement (Dice per class) of bf16 and fp32 masks of the reference
bundle on real CT volumes from ``../shared/data`` (skipped when absent).

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_inference.py --json bench_inference.json  # ~5 min
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_inference.py --quick   # smoke run, well under 1 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNET_MED_SHARED", REPO.parent / "shared")) / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["main"]

ROI = 96
OVERLAP = 0.5
SW_BATCH = 4


def matmul_gflops(dtype: torch.dtype, n: int = 4096, reps: int = 5) -> float:
    """Best-of-``reps`` rate of an ``n x n`` matrix multiply in ``dtype``, GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def build_networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(BasicUNet, UNet)``: the same network, the same weights (``bench_network.build_nets``)."""
    from bench_network import build_nets

    nets = build_nets()
    return nets["basic"].eval(), nets["ours"].eval()


def forward_gflop() -> float:
    """FLOPs of one 96^3 window through the network (batch 1), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    _, ours = build_networks()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        ours(torch.zeros(1, 1, ROI, ROI, ROI))
    return counter.get_total_flops() / 1e9


class NetTimer:
    """Forward hooks that add up the time spent inside ``module`` and count the windows it saw."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds, self.windows, self._start = 0.0, 0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, module: Any, args: Any) -> None:
        self._start = time.perf_counter()
        self.windows += int(args[0].shape[0])

    def _post(self, module: Any, args: Any, out: Any) -> None:
        self.seconds += time.perf_counter() - self._start


# -- workers: each runs in a fresh process so its peak RSS is its own -------------------------------------------


def make_bench_bundle(root: Path) -> Path:
    """A bundle whose network is ``UNet`` with BasicUNet's widths and layers, holding BasicUNet's weights.

    Its configs are the template's (from the reference bundle's task with BasicUNet's widths, a 96^3 window and
    two classes), with two changes no task can express: BasicUNet's LeakyReLU, and no intensity change (the raw
    volume, as the MONAI path gets it). So it is custom code, run with ``trust_bundle_code``.
    """
    from bench_network import ACT, NORM, OURS_FEATURES

    from unet_med.bundle.build import new_bundle

    task = json.loads((REPO / "bundles" / "unet" / "configs" / "task.json").read_text())
    task["classes"] = ["background", "foreground"]
    task["network"] = {"features": list(OURS_FEATURES)}
    task["patch_size"] = [ROI] * 3
    task["preprocessing"] = {"pixdim": None}
    task["training"].pop("demo", None)
    new_bundle(task, root)
    inference = json.loads((root / "configs" / "inference.json").read_text())
    inference["network_def"].update(norm=list(NORM), act=list(ACT))
    inference["preprocessing"].update(modality="none", orientation=None)
    inference.update(overlap=OVERLAP, sw_batch_size=SW_BATCH)
    (root / "configs" / "inference.json").write_text(json.dumps(inference, indent=4))
    _, ours = build_networks()
    torch.save(ours.state_dict(), root / "models" / "model.pt")
    return root


def worker_monai(volume: Path, out: Path) -> dict[str, Any]:
    from monai.inferers import sliding_window_inference

    basic, _ = build_networks()
    x = torch.from_numpy(np.asarray(nib.load(volume).dataobj, dtype=np.float32))[None, None]
    timer = NetTimer(basic)
    start = time.perf_counter()
    with torch.no_grad():
        logits = sliding_window_inference(x, ROI, SW_BATCH, basic, overlap=OVERLAP)
        mask = logits.argmax(1)[0].to(torch.uint8)
    seconds = time.perf_counter() - start
    np.save(out, mask.numpy())
    return {"seconds": seconds, "net_seconds": timer.seconds, "windows": timer.windows}


def worker_ours(volume: Path, bundle: Path, precision: str, out: Path) -> dict[str, Any]:
    from unet_med.inference import Predictor, load_bundle
    from unet_med.inference.runtime import glibc_malloc_kept

    model = load_bundle(bundle, trust_bundle_code=True)
    predictor = Predictor(model, precision=precision, overlap=OVERLAP, sw_batch_size=SW_BATCH)
    # the windows run a prepared copy of the network (fast layers, layout): time that one
    prepared, _ = predictor.inferer.prepare(predictor.network, predictor.device)
    timer = NetTimer(prepared)
    with glibc_malloc_kept(release=False):  # as `unet-med predict` runs its cases
        result = predictor.predict_case(volume, out.parent / f"{out.stem}_dir")
    if not result.ok:
        raise RuntimeError(result.error)
    np.save(out, np.asarray(nib.load(result.outputs[0]).dataobj))
    return {
        "seconds": result.seconds["total"],
        "infer_seconds": result.seconds["infer"],
        "net_seconds": timer.seconds,
        "windows": timer.windows,
        "precision": str(predictor.dtype).replace("torch.", ""),
    }


def worker_monai_run(volume: Path, bundle: Path, out: Path) -> dict[str, Any]:
    """``python -m monai.bundle run --config_file <bundle>/configs/inference.json`` (MONAI's own runner, the same
    inferer and post-processing as ``ours``), timed from the command's start to the mask on disk."""
    from monai.bundle.scripts import run

    masks = out.parent / f"{out.stem}_run_{volume.name.split('.')[0]}"
    start = time.perf_counter()
    run(config_file=str(bundle / "configs" / "inference.json"), input=str(volume), output_dir=str(masks))
    seconds = time.perf_counter() - start
    (mask,) = list(masks.glob("*_seg.nii.gz"))
    np.save(out, np.asarray(nib.load(mask).dataobj))
    return {"seconds": seconds, "net_seconds": float("nan"), "windows": 0}


def worker_memory(volume: Path, out_dir: Path) -> dict[str, Any]:
    from unet_med.cli import main as cli

    start = time.perf_counter()
    status = cli(["predict", "--quiet", "--bundle", str(REPO / "bundles" / "unet"), "--input", str(volume),
                  "--output", str(out_dir)])  # fmt: skip
    return {"seconds": time.perf_counter() - start, "status": status}


def worker_agree(volume: Path, out: Path) -> dict[str, Any]:
    from unet_med.inference import Predictor, argmax_uint8, load_bundle

    masks = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(load_bundle(REPO / "bundles" / "unet"), precision=precision)
        masks[precision] = argmax_uint8(predictor.infer(predictor._load(volume)["image"])).numpy()
    a, b = masks["fp32"], masks["bf16"]
    dice = {}
    for c in range(1, 3):
        total = int((a == c).sum() + (b == c).sum())
        dice[c] = None if total == 0 else 2 * int(((a == c) & (b == c)).sum()) / total
    return {"dice": dice, "voxel_agreement": float((a == b).mean()), "voxels": int(a.size),
            "fg_voxels_fp32": {c: int((a == c).sum()) for c in (1, 2)}}  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: ``VmHWM`` from ``/proc/self/status``.

    Not ``ru_maxrss``: Linux carries the parent's peak across fork and exec into it, so a worker started from a
    large parent would report at least the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(*args: str) -> dict[str, Any]:
    """Runs this script as a worker in a fresh process; returns its JSON result with ``peak_rss_mb``."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(args: list[str]) -> None:
    kind, rest = args[0], args[1:]
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if kind == "monai":
        result = worker_monai(Path(rest[0]), Path(rest[1]))
    elif kind == "ours":
        result = worker_ours(Path(rest[0]), Path(rest[1]), rest[2], Path(rest[3]))
    elif kind == "monai-run":
        result = worker_monai_run(Path(rest[0]), Path(rest[1]), Path(rest[2]))
    elif kind == "memory":
        result = worker_memory(Path(rest[0]), Path(rest[1]))
    elif kind == "agree":
        result = worker_agree(Path(rest[0]), Path(rest[1]))
    else:
        raise SystemExit(f"unknown worker {kind}")
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# -- the run -------------------------------------------------------------------------------------------------------


def synthetic_ct(shape: tuple[int, ...], spacing: tuple[float, ...], path: Path, seed: int = 0) -> Path:
    """A CT-like int16 volume (HU): a body ellipse with soft tissue, organs, bone and noise."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape[:2]], indexing="ij")
    body = (grids[0] ** 2 / 0.8 + grids[1] ** 2 / 0.6) < 1.0
    organ = ((grids[0] - 0.2) ** 2 + (grids[1] + 0.1) ** 2) < 0.08
    bone = ((grids[0] + 0.3) ** 2 + grids[1] ** 2) < 0.01
    slice_hu = np.where(body, 40, -1000) + np.where(organ, 60, 0) + np.where(bone, 700, 0)
    vol = np.repeat(slice_hu[:, :, None].astype(np.int16), shape[2], axis=2)
    vol += rng.normal(0, 20, size=shape).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([*spacing, 1.0])), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small volumes, for a smoke run")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--skip-monai", action="store_true", help="skip the (slow) MONAI default path")
    args = parser.parse_args(argv)
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    report: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "threads": threads,
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "bf16_matmul_gflops": matmul_gflops(torch.bfloat16),
        "fp32_matmul_gflops": matmul_gflops(torch.float32),
        "gflop_per_window": forward_gflop(),
        "volumes": {},
    }
    print(f"matmul: bf16 {report['bf16_matmul_gflops']:.0f}, fp32 {report['fp32_matmul_gflops']:.0f} GFLOP/s; "
          f"{report['gflop_per_window']:.1f} GFLOP per {ROI}^3 window", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = make_bench_bundle(tmp / "bundle")
        volumes = {}
        shape = (96, 96, 96) if args.quick else (256, 256, 128)
        volumes[f"synthetic CT {'x'.join(map(str, shape))}"] = synthetic_ct(shape, (1.0, 1.0, 1.0), tmp / "syn.nii.gz")
        real = SHARED / "SarcomaCT" / "imagesTr" / "STS_002.nii.gz"
        if real.is_file() and not args.quick:
            img = nib.load(real)
            volumes[f"SarcomaCT STS_002 {'x'.join(map(str, img.shape))}"] = real
        for name, path in volumes.items():
            entry: dict[str, Any] = {"voxels": int(np.prod(nib.load(path).shape))}
            configs = [("ours", "auto"), ("monai-bundle-run", "auto"), ("ours-fp32", "fp32")]
            configs += [] if args.skip_monai else [("monai", "fp32")]
            for label, precision in configs:
                out = tmp / f"{label}.npy"
                if label == "monai":
                    r = run_worker("monai", str(path), str(out))
                elif label == "monai-bundle-run":
                    r = run_worker("monai-run", str(path), str(bundle), str(out))
                else:
                    r = run_worker("ours", str(path), str(bundle), precision, str(out))
                r["voxels_per_s"] = entry["voxels"] / r["seconds"]
                r["net_gflops"] = report["gflop_per_window"] * r["windows"] / r["net_seconds"] if r["windows"] else 0
                entry[label] = r
                print(f"{name}: {label}: {r['seconds']:.1f} s, net {r['net_seconds']:.1f} s, {r['windows']} windows, "
                      f"{r['net_gflops']:.0f} GFLOP/s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            masks = {label: np.load(tmp / f"{label}.npy") for label, _ in configs}
            entry["mask_agreement_vs_ours"] = {k: float((v == masks["ours"]).mean()) for k, v in masks.items()}
            if "monai" in entry:
                entry["speedup_vs_monai"] = entry["monai"]["seconds"] / entry["ours"]["seconds"]
            entry["speedup_vs_ours_fp32"] = entry["ours-fp32"]["seconds"] / entry["ours"]["seconds"]
            report["volumes"][name] = entry

        mem_shape = (128, 128, 64) if args.quick else (512, 512, 300)
        ct = synthetic_ct(mem_shape, (0.8, 0.8, 1.0), tmp / "big_ct.nii.gz", seed=1)
        report["memory"] = {"shape": list(mem_shape), **run_worker("memory", str(ct), str(tmp / "mem_out"))}
        print(f"reference bundle on {mem_shape}: {report['memory']}", flush=True)

        agree = {}
        for name, path in (
            ("SarcomaCT STS_002", SHARED / "SarcomaCT" / "imagesTr" / "STS_002.nii.gz"),
            ("TotalSegCT", SHARED / "TotalSegCT" / "image.nii.gz"),
        ):
            if path.is_file() and not args.quick:
                agree[name] = run_worker("agree", str(path), str(tmp / "agree.npy"))
                print(f"bf16 vs fp32, reference bundle, {name}: {agree[name]}", flush=True)
        report["bf16_vs_fp32"] = agree
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
    else:
        sys.exit(main())
