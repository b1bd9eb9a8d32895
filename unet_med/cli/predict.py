"""``unet-med predict``: segment scans with a bundle, writing one mask per case in the input's geometry.

::

    unet-med predict --bundle bundles/unet --input scans/ --output masks/ [--overwrite] [--mirror] [--overlap 0.5]
        [--device cpu|cuda] [--precision auto|fp32|bf16|fp16] [--sw-batch-size 4] [--save-probabilities]
        [--format nifti|dicom-seg|rtstruct[,...]] [--series UID]
        [--max-memory 8G] [--max-voxels N] [--dry-run]

``--input`` is a NIfTI/NRRD/MetaImage file, a PNG/TIFF (2D bundles), a DICOM series folder, or a folder of any
of these; a patient or study folder is searched down to its DICOM series, and the folders passed over are listed
with the reason (RTSTRUCT or SR only, no series). Each case is written as ``<case>_seg`` in the input's format,
``<case>`` being the file's name, or for a DICOM series its SeriesInstanceUID (NIfTI). An existing output is
not overwritten without ``--overwrite``: the run stops before any work. ``OUT/qc.json`` records every case.

When the bundle's task keeps its training data's fingerprint, every input is checked against it (spacing, field
of view, intensities; :mod:`unet_med.inference.input_check`); an input unlike the training data is predicted, and
warned about on its line and in ``qc.json``.

Exit status: 0 every case predicted, no warning; 3 every case predicted, some with warnings (input unlike the
training data: look at those masks); 1 some case failed (the others are written); 2 the bundle, the input or the
output folder cannot be used (nothing predicted).

For a DICOM series, ``--format dicom-seg`` writes ``<case>_seg.dcm`` (DICOM SEG) and ``--format rtstruct``
``<case>_rtstruct.dcm`` (comma-separated for several, e.g. ``nifti,dicom-seg``; see docs/dicom.md).

The bundle is recognised first (:mod:`unet_med.bundle.recognize`): a bundle whose configs are not what the
installed template makes is refused before anything of it runs, unless ``--trust-bundle-code`` is given.

Each case's header is checked and its memory planned before its voxels are read (docs/memory.md): a case larger
than ``--max-voxels`` or needing more than ``--max-memory`` is refused in one line; ``--dry-run`` prints the plans.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNUSABLE", "EXIT_WARNINGS", "register"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2
EXIT_WARNINGS = 3


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {s % 60:.0f} s"


def _predict(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from unet_med.inference.bundle_model import BundleError, load_bundle
    from unet_med.inference.cases import discover_cases
    from unet_med.inference.predictor import Predictor
    from unet_med.inference.qc import case_record, write_qc
    from unet_med.inference.runtime import default_num_threads, glibc_malloc_kept

    torch.set_num_threads(args.threads or default_num_threads())
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"unet-med predict: --device {device} asked for, but torch sees no CUDA GPU", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        found = discover_cases(args.input)
        cases, outputs = found.cases, _outputs(found.cases, args)
        _check_weights(args)  # before the networks are built: a bundle whose widths alone exceed the budget
        model = load_bundle(
            args.bundle, device="cpu", model_file=args.model_file, trust_bundle_code=args.trust_bundle_code
        )
        predictor = Predictor(
            model,
            device=device,
            precision=args.precision,
            overlap=args.overlap,
            sw_batch_size=args.sw_batch_size,
            mirror=args.mirror,
            mirror_axes=args.mirror_axes,
            roi_size=args.roi_size,
            save_probabilities=args.save_probabilities,
            compile=args.compile,
            progress=not args.quiet,
            output_formats=args.format,
            series_uid=args.series,
            max_voxels=args.max_voxels or None,
            max_memory=args.max_memory,
        )
    except (BundleError, FileNotFoundError, ValueError) as e:
        print(f"unet-med predict: {e}", file=sys.stderr)
        return EXIT_UNUSABLE

    if not args.quiet:
        _report_found(found)
        print(
            f"{model.name}: {len(cases)} case(s), {predictor.device} {str(predictor.dtype).replace('torch.', '')}, "
            f"window {'x'.join(map(str, predictor.roi_size))}, overlap {args.overlap}"
            f"{', mirroring' if args.mirror else ''}, {torch.get_num_threads()} threads",
            file=sys.stderr,
        )
    if args.dry_run:
        return _dry_run(predictor, cases)
    start = time.perf_counter()
    bar = tqdm(cases, desc="cases", unit="case", disable=args.quiet, position=0, leave=True, file=sys.stderr)
    # one block for all cases: each reuses the buffers of the last (see glibc_malloc_kept)
    kept = glibc_malloc_kept(release=False) if predictor.tune_malloc else contextlib.nullcontext()
    with kept:
        results = [_run_case(predictor, case, args, bar, found.relative(case)) for case in bar]
    bar.close()
    write_qc([case_record(r, outputs[r.input][0]) for r in results], args.output, model.name)

    failed = [r for r in results if not r.ok]
    warned = [r for r in results if r.ok and r.warnings]
    infer = sum(r.seconds.get("infer", 0.0) for r in results)
    elapsed = _fmt_seconds(time.perf_counter() - start)
    print(
        f"predicted {len(results) - len(failed)} of {len(results)} case(s) in {elapsed}"
        f" (inference {_fmt_seconds(infer)}); outputs and qc.json in {args.output}"
    )
    if warned:
        print(
            f"{len(warned)} case(s) unlike the training data (see their lines and qc.json): check those masks",
            file=sys.stderr,
        )
    if failed:
        print(f"{len(failed)} case(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  - {r.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_WARNINGS if warned else EXIT_OK


def _outputs(cases: list[Any], args: argparse.Namespace) -> dict[Any, list[Any]]:
    """Each case's output files; refuses names that collide, and existing files unless ``--overwrite``.

    Raises:
        ValueError: two cases would write the same file, or a file exists (one line, before any work).
    """
    from unet_med.dicom.outputs import dicom_output_path, parse_formats
    from unet_med.inference.output import case_name, output_path

    uid, formats = args.series, [f for f in parse_formats(args.format) if f != "nifti"]
    outputs = {c: [output_path(c, args.output, series_uid=uid)] for c in cases}
    for c in cases:  # the DICOM results and the probabilities are refused or replaced like the mask
        outputs[c] += [dicom_output_path(case_name(c, uid), args.output, f) for f in formats]
        if args.save_probabilities:
            outputs[c].append(output_path(c, args.output, postfix="prob", probabilities=True, series_uid=uid))
    seen: dict[Any, Any] = {}
    for case, paths in outputs.items():
        for path in paths:
            if path in seen:
                raise ValueError(f"{seen[path].name} and {case.name} would both be written to {path}")
            seen[path] = case
    existing = [p for p in seen if p.exists()]
    if existing and not args.overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]} exists{more}; give --overwrite to replace, or another --output")
    return outputs


def _report_found(found: Any) -> None:
    """Which DICOM series were found under the input, and which folders were passed over and why."""
    for folder, description in found.series.items():
        print(f"series  {found.relative(folder)}  ({description})", file=sys.stderr)
    for folder, why in found.skipped:
        print(f"skipped {found.relative(folder)}: {why}", file=sys.stderr)


def _check_weights(args: argparse.Namespace) -> None:
    """Refuses a recognised bundle whose networks' weights alone exceed ``--max-memory`` (from its task)."""
    from unet_med.bundle.task import TASK_FILE, TaskError, load_task
    from unet_med.inference.memory_plan import ModelSpec, check_weights, default_budget

    if args.trust_bundle_code or not (Path(args.bundle) / TASK_FILE).is_file():
        return  # a trusted bundle's task is not read
    try:
        task = load_task(args.bundle)
    except TaskError:
        return  # an invalid task: load_bundle's recognition refuses the bundle and says why
    check_weights(ModelSpec.from_task(task), args.max_memory or default_budget()[0], source=str(args.bundle))


def _dry_run(predictor: Any, cases: list[Any]) -> int:
    """``--dry-run``: each case's memory plan (or its refusal), one line per case; nothing is read past headers."""
    from unet_med.inference.predictor import InputError

    failed = 0
    for case in cases:
        try:
            plan = predictor.plan(case)
            print(f"plan  {case.name}: {plan.describe() if plan else 'no estimate (network of unknown sizes)'}")
        except InputError as e:
            failed += 1
            print(f"FAIL  {e}")
    return 1 if failed else 0


def _run_case(predictor: Any, case: Any, args: argparse.Namespace, bar: Any, name: str) -> Any:
    """Predicts one case and reports it on the progress bar's stream (input size; the grid it ran on)."""
    from tqdm import tqdm

    bar.set_postfix_str(name)
    result = predictor.predict_case(case, args.output)
    if result.ok and (result.warnings or not args.quiet):
        s = result.seconds
        grid = f" (ran on {'x'.join(map(str, result.grid))})" if result.grid and result.grid != result.shape else ""
        tqdm.write(
            f"{'warn' if result.warnings else 'ok':<5} {name}  {'x'.join(map(str, result.shape))}{grid}  "
            f"-> {result.outputs[0]}  (load {s['load']:.1f} s, infer {s['infer']:.1f} s, write {s['write']:.1f} s)"
        )
        for warning in result.warnings:
            tqdm.write(f"      input unlike the training data: {warning}")
    elif not result.ok:
        tqdm.write(f"FAIL  {result.error}", file=sys.stderr)
    return result


def _axes(text: str) -> list[int]:
    return [int(a) for a in text.split(",") if a.strip()]


def _memory(text: str) -> int:
    from unet_med.inference.memory_plan import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _size(text: str) -> list[int]:
    return [int(a) for a in text.replace("x", ",").split(",") if a.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``predict`` to the ``unet-med`` command line."""
    # Two threads spinning while another process holds a core run ~5x slower: wait passively unless told otherwise.
    # Only effective when OpenMP has not started yet, i.e. before torch is imported.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = subparsers.add_parser(
        "predict",
        help="segment scans with a bundle (masks in the input's own geometry)",
        description="Sliding-window prediction with a bundle's network; one mask per case, named <case>_seg. "
        "Exit status: 0 ok; 3 done with warnings (inputs unlike the training data); 1 some case failed; "
        "2 bundle, input or output folder unusable.",
    )
    p.add_argument("--bundle", required=True, help="bundle folder (configs/, models/model.pt)")
    p.add_argument("--input", required=True, help="image file, DICOM series folder, or a folder of them")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (default: refuse)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="network precision; auto = bf16 on CPUs with native bf16, fp16/bf16 on GPUs, else fp32",
    )
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap (default 0.5)")
    p.add_argument("--sw-batch-size", type=int, default=4, help="windows per forward pass (default 4)")
    p.add_argument("--roi-size", type=_size, default=None, help="window size, e.g. 96,96,96 (default: patch_size)")
    p.add_argument("--mirror", action="store_true", help="mirroring test-time augmentation (2^d passes per window)")
    p.add_argument("--mirror-axes", type=_axes, default=None, help="spatial axes to mirror, e.g. 0,1 (default all)")
    p.add_argument("--save-probabilities", action="store_true", help="also write class probabilities (<case>_prob)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow first call)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    p.add_argument(
        "--max-voxels",
        type=int,
        default=1 << 30,
        help="refuse a scan whose header promises more voxels x channels, before reading it (default 2^30; 0: none)",
    )
    p.add_argument(
        "--max-memory",
        type=_memory,
        default=None,
        help="memory budget, e.g. 8G (default: 80%% of the memory available); a case that cannot fit is refused",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print each case's memory estimate and choices; predict nothing"
    )
    p.add_argument("--model-file", default=None, help="weights to use instead of <bundle>/models/model.pt")
    p.add_argument(
        "--format",
        default="nifti",
        help="nifti (the input's format), dicom-seg, rtstruct, or several comma-separated (DICOM formats need a "
        "DICOM series input; default nifti)",
    )
    p.add_argument("--series", default=None, help="SeriesInstanceUID to read from folders holding several series")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-case lines for cases that succeed")
    p.add_argument(
        "--trust-bundle-code",
        action="store_true",
        help="run a bundle that the installed template does not recognise (its configs are code: only on purpose)",
    )
    p.set_defaults(func=_predict)
