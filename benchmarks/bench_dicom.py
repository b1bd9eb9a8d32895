"""What writing DICOM SEG and RTSTRUCT adds to ``unet-med predict`` on a 512x512x300 CT series.

A synthetic CT series (512 x 512 x 300 single-frame images, 0.8 x 0.8 x 1.5 mm, int16 HU: a body ellipse, noise and a
7 cm "tumour" sphere) is written with pydicom into a temporary folder. ``unet-med predict`` then segments it with a
CT bundle (default ``bundles/sarcoma_ct``) in fresh processes, alternating ``--format nifti`` and
``--format nifti,dicom-seg,rtstruct`` for ``--rounds`` rounds, timed from the command's start to its exit. The
per-case stage times the command prints (load, infer, write) are recorded too: the DICOM objects are built and
written in the write stage, the series' headers are read in the load stage.

Also timed in this process (wall and CPU seconds; CPU time is what a busy machine does not inflate):
reading the series' headers, :func:`unet_med.dicom.write_seg` and :func:`unet_med.dicom.write_rtstruct` alone on
the series with the sphere as the mask (a large, dense result: 7 cm across, on 47 images).

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_dicom.py --json bench_dicom.json  # ~10-20 min on 2 cores
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_dicom.py --quick   # 128x128x40 smoke run
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_dicom.py --writers-only  # the writers alone, ~2 min
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = re.compile(r"\(load ([\d.]+) s, infer ([\d.]+) s, write ([\d.]+) s\)")


def write_ct(folder: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """Writes the synthetic series; returns the sphere mask ``(columns, rows, images)``."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cols, rows, images = shape
    i, j = np.meshgrid(np.arange(cols), np.arange(rows), indexing="ij")
    x, y = (i - cols / 2) * spacing[0], (j - rows / 2) * spacing[1]
    body = (x / (0.42 * cols * spacing[0])) ** 2 + (y / (0.32 * rows * spacing[1])) ** 2 < 1
    mask = np.zeros(shape, dtype=np.uint8)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(images):
        z = (k - images / 2) * spacing[2]
        sphere = x**2 + (y - 20) ** 2 + z**2 < 35.0**2
        mask[:, :, k] = sphere
        hu = np.where(body, 40, -1000) + rng.normal(0, 15, size=(cols, rows)) + np.where(sphere, 30, 0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Bench^Mark", "BENCH", "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber, ds.StudyDate, ds.StudyTime = study, "1", "", "", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "CT", series, 1, k
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
        ds.ImagePositionPatient = [-cols / 2 * spacing[0], -rows / 2 * spacing[1], z]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(np.clip(hu, -1024, 3071).astype(np.int16).T).tobytes()
        ds.save_as(folder / f"CT{k:04d}.dcm", enforce_file_format=True)
    return mask


def run_predict(bundle: Path, series: Path, out: Path, formats: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "unet_med", "predict", "--bundle", str(bundle), "--input", str(series)]
    cmd += ["--output", str(out), "--format", formats]
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    wall = time.perf_counter() - start
    if run.returncode not in (0, 3):  # 3: predicted, with a warning (a synthetic CT is unlike the training crops)
        raise RuntimeError(f"predict failed ({run.returncode}): {run.stderr[-2000:]}")
    stages = STAGES.search(run.stderr + run.stdout)
    load, infer, write = (float(v) for v in stages.groups()) if stages else (float("nan"),) * 3
    return {"wall_s": wall, "load_s": load, "infer_s": infer, "write_s": write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(REPO / "bundles" / "sarcoma_ct"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="128x128x40 series, one round")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--writers-only", action="store_true", help="time the DICOM writers alone, not predict")
    args = parser.parse_args()
    shape = (128, 128, 40) if args.quick else (512, 512, 300)
    rounds = 1 if args.quick else args.rounds
    spacing = (0.8, 0.8, 1.5)

    from unet_med.dicom import class_concepts, read_series, write_rtstruct, write_seg
    from unet_med.inference.bundle_model import load_bundle

    results: dict[str, object] = {"shape": shape, "spacing_mm": spacing, "bundle": args.bundle, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_dicom_") as tmp:
        series_dir = Path(tmp) / "series"
        t0 = time.perf_counter()
        mask = write_ct(series_dir, shape, spacing)
        print(f"series {shape} written in {time.perf_counter() - t0:.1f} s", flush=True)

        model = load_bundle(args.bundle)
        concepts = class_concepts(model.class_names, model.class_codes)
        algorithm = (model.name, model.version)
        timed: dict[str, float] = {}

        def clock(name: str, fn, *fn_args) -> object:  # wall and this process's CPU seconds
            w, c = time.perf_counter(), time.process_time()
            out = fn(*fn_args)
            timed[f"{name}_s"], timed[f"{name}_cpu_s"] = time.perf_counter() - w, time.process_time() - c
            return out

        series = clock("read_headers", read_series, series_dir)
        clock("seg", write_seg, mask, series, concepts, Path(tmp) / "seg.dcm", algorithm)
        clock("rtstruct", write_rtstruct, mask, series, concepts, Path(tmp) / "rs.dcm", algorithm)
        results["writers_alone"] = {**timed, "mask_voxels": int(mask.sum())}
        print("alone: " + ", ".join(f"{k} {v:.2f}" for k, v in timed.items()) + f" ({int(mask.sum())} voxels)")

        if args.writers_only:
            rounds = 0
        for r in range(rounds):
            order = ("nifti", "nifti,dicom-seg,rtstruct") if r % 2 == 0 else ("nifti,dicom-seg,rtstruct", "nifti")
            for formats in order:
                timing = run_predict(Path(args.bundle), series_dir, Path(tmp) / f"out_{r}_{len(formats)}", formats)
                results["runs"].append({"round": r, "formats": formats, **timing})  # type: ignore[union-attr]
                print(f"round {r} {formats:28s} " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()), flush=True)
    runs = results["runs"]
    if not runs:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return
    base = np.median([x["wall_s"] for x in runs if x["formats"] == "nifti"])  # type: ignore[index]
    full = np.median([x["wall_s"] for x in runs if x["formats"] != "nifti"])  # type: ignore[index]
    results["overhead"] = float(full / base - 1.0)
    print(f"median wall: nifti {base:.1f} s, nifti+SEG+RTSTRUCT {full:.1f} s: +{100 * (full / base - 1):.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
