"""The memory planner's estimate against the measured peak resident memory of ``unet-med predict``, per bundle, on
real cases from ``../shared/data`` and a 512x512x300 CT.

For each (bundle, case): ``unet-med predict --dry-run`` gives the estimate (``peak ~``), then ``/usr/bin/time -v
unet-med predict`` on the case alone gives the measured peak (maximum resident set size). With ``--tight``, the
case is run again with ``--max-memory`` set to the estimate of one window at a time (the planner then lowers the
window batch) and to half the measured peak (the planner refuses, or fits by its choices).

Usage::

    OMP_WAIT_POLICY=PASSIVE nice -n 10 python benchmarks/bench_memory.py --json bench_memory.json [--tight]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("UNET_MED_SHARED", REPO.parent / "shared")) / "data"
UNET_MED = [sys.executable, "-m", "unet_med"]


def _cases(work: Path) -> list[tuple[str, Path]]:
    """(bundle, case file) pairs; the BraTS case is stacked into one 2-channel NIfTI, the 512x512x300 CT made."""
    brats = work / "brats_pat0003.nii.gz"
    if not brats.exists():
        flair = nib.load(DATA / "BraTS2013" / "imagesTr" / "brats_2013_pat0003_1_flair.nii.gz")
        t1c = nib.load(DATA / "BraTS2013" / "imagesTr" / "brats_2013_pat0003_1_t1c.nii.gz")
        stack = np.stack([np.asarray(flair.dataobj), np.asarray(t1c.dataobj)], axis=-1).astype(np.float32)
        nib.save(nib.Nifti1Image(stack, flair.affine), brats)
    ct = work / "ct_512x512x300.nii.gz"
    if not ct.exists():  # a body-like CT: air around a water cylinder with a few denser blobs, int16 HU
        x, y = np.mgrid[-256:256, -256:256]
        body = np.where(x**2 + y**2 < 200**2, 40, -1000).astype(np.int16)
        volume = np.repeat(body[..., None], 300, axis=2)
        volume[200:260, 220:300, 100:180] = 300
        nib.save(nib.Nifti1Image(volume, np.diag([0.7, 0.7, 1.0, 1.0])), ct)
    em = sorted((DATA / "ISBI2012EM" / "train" / "image").glob("*.png"))[0]
    nuclei = sorted((DATA / "DSB2018Nuclei" / "images").glob("*.png"))[0]
    return [
        ("hippocampus_mri", DATA / "Task04_Hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"),
        ("sarcoma_ct", DATA / "SarcomaCT" / "imagesTr" / "STS_007.nii.gz"),
        ("sarcoma_ct", DATA / "LungCTNrrd" / "lung1_image.nrrd"),
        ("sarcoma_ct", ct),
        ("brats_mri", brats),
        ("em_membranes", em),
        ("nuclei_fluorescence", nuclei),
        ("unet", DATA / "MNI152" / sorted(p.name for p in (DATA / "MNI152").glob("*t1*.nii*"))[0]),
    ]


def _predict(bundle: str, case: Path, out: Path, *extra: str) -> tuple[str, int, float]:
    """Runs predict under ``/usr/bin/time -v``; returns its output, its peak RSS in bytes and its wall time."""
    args = ["/usr/bin/time", "-v", *UNET_MED, "predict", "--quiet", "--bundle", str(REPO / "bundles" / bundle)]
    start = time.perf_counter()
    proc = subprocess.run(
        [*args, "--input", str(case), "--output", str(out), *extra], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) * 1024
    return proc.stdout + proc.stderr, rss, seconds


def _estimate(bundle: str, case: Path, *extra: str) -> tuple[float, str]:
    """The dry run's estimate in bytes and its line."""
    args = [*UNET_MED, "predict", "--quiet", "--bundle", str(REPO / "bundles" / bundle), "--input", str(case)]
    proc = subprocess.run([*args, "--output", "/tmp", "--dry-run", *extra], capture_output=True, text=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith(("plan", "FAIL")))
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    base = re.search(r"\(base ([\d.]+) (\w+);", line)
    phases = re.findall(r"(?:load|resample|window|write) ([\d.]+) (\w+)", line)
    if not base or not phases:
        return float("nan"), line
    peak = float(base.group(1)) * units[base.group(2)] + max(float(v) * units[u] for v, u in phases)
    return peak, line  # from the base and the phases: the printed peak is rounded to 0.1 GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--tight", action="store_true", help="also run with budgets below the measured peak")
    parser.add_argument("--only", default=None, help="run only the cases whose bundle or file name holds this")
    parser.add_argument("--estimate-only", action="store_true", help="dry runs only (no prediction measured)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for bundle, case in _cases(work):
            if args.only and args.only not in bundle and args.only not in case.name:
                continue
            estimate, line = _estimate(bundle, case)
            if args.estimate_only:
                print(f"{bundle:20s} {case.name:32s} est {estimate / 2**20:7.0f} MiB", flush=True)
                rows.append({"bundle": bundle, "case": case.name, "estimate": estimate, "plan": line})
                continue
            _, rss, seconds = _predict(bundle, case, work / "out")
            row = {"bundle": bundle, "case": case.name, "estimate": estimate, "measured": rss, "seconds": seconds}
            row["error"] = estimate / rss - 1
            row["plan"] = line
            print(f"{bundle:20s} {case.name:32s} est {estimate / 2**20:7.0f} MiB  rss {rss / 2**20:7.0f} MiB  "
                  f"{row['error']:+.0%}  {seconds:.0f} s", flush=True)  # fmt: skip
            if args.tight:
                for name, budget in (("one window", None), ("half peak", rss // 2)):
                    if budget is None:
                        one, _ = _estimate(bundle, case, "--sw-batch-size", "1")
                        budget = int(one * 1.02)
                    output, peak, secs = _predict(bundle, case, work / "tight", "--max-memory", str(budget))
                    refused = "needs about" in output
                    row[name] = {"budget": budget, "measured": peak, "refused": refused, "seconds": secs}
                    print(f"    {name}: budget {budget / 2**20:.0f} MiB -> {'refused' if refused else 'ran'}, "
                          f"peak {peak / 2**20:.0f} MiB ({peak / budget - 1:+.0%} of the budget), {secs:.0f} s",
                          flush=True)  # fmt: skip
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
