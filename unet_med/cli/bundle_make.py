"""``unet-med bundle`` commands that make and run bundles.

- ``unet-med bundle new DIR --task TASK.json``: a bundle folder from a task description (configs from the template,
  a model-card and a licence stub to fill in).
- ``unet-med bundle build DIR [--check]``: rewrite ``configs/`` from ``configs/task.json``; with ``--check``, only
  report what differs (exit status 1).
- ``unet-med bundle fingerprint DIR --dataset_dir D``: keep the training images' fingerprint in
  ``configs/task.json`` (spacing, field of view, intensity percentiles), which ``unet-med predict`` checks every
  input against.
- ``unet-med bundle run DIR inferring|evaluating|training [--trust-bundle-code] [--ID VALUE ...]``: recognise the
  bundle, then run its MONAI workflow from the checked bytes; ``--ID VALUE`` pairs override config ids as on
  MONAI's command line (``--input scans/ --output_dir masks/``).
- ``unet-med bundle export DIR [--torchscript OUT.ts] [--onnx OUT.onnx]``: the receiver's own exports of a
  recognised bundle (a sender's model files are never run).
- ``unet-med bundle half DIR``: store ``models/model.pt`` in float16 (half the size; loads into float32).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["parse_overrides", "register_make"]

_TRUST_HELP = "accept a bundle the installed template does not recognise (its configs are code: only on purpose)"


def parse_overrides(extra: list[str]) -> dict[str, Any]:
    """``["--input", "a.nii.gz", "--max_epochs", "5"]`` -> ``{"input": "a.nii.gz", "max_epochs": 5}`` (JSON values
    where they parse, else strings), as MONAI's ``--ID VALUE`` command line.

    Raises:
        ValueError: an argument that is not ``--ID`` followed by a value.
    """
    if len(extra) % 2:
        raise ValueError(f"overrides come in '--ID VALUE' pairs, got {extra}")
    out: dict[str, Any] = {}
    for key, text in zip(extra[::2], extra[1::2]):
        if not key.startswith("--") or len(key) < 3:
            raise ValueError(f"expected --ID before {text!r}, got {key!r}")
        try:
            out[key[2:]] = json.loads(text)
        except ValueError:
            out[key[2:]] = text
    return out


def _new(args: argparse.Namespace) -> int:
    from unet_med.bundle.build import new_bundle
    from unet_med.bundle.task import TaskError

    try:
        root = new_bundle(args.task, args.bundle)
    except (TaskError, FileExistsError, OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    configs = sorted(p.name for p in (root / "configs").iterdir())
    print(
        f"made {root} from {args.task}: configs/ ({', '.join(configs)}), docs/README.md and LICENSE to fill in, "
        "models/ empty until trained\n"
        "next: train it on your dataset (MSD-style dataset.json + imagesTr/labelsTr, or paired folders):\n"
        f"  python -m monai.bundle run training --config_file {root}/configs/train.json --dataset_dir DATA\n"
        f"then cross-validate it: unet-med bundle cv {root} --dataset_dir DATA\n"
        f"after editing {root}/configs/task.json: unet-med bundle build {root}"
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    from unet_med.bundle.build import build_bundle, check_bundle
    from unet_med.bundle.task import TaskError

    try:
        if args.check:
            problems = check_bundle(args.bundle)
            print("\n".join(problems) if problems else f"{args.bundle}: configs are what the template makes")
            return 1 if problems else 0
        changed = build_bundle(args.bundle)
    except TaskError as e:
        print(e, file=sys.stderr)
        return 1
    print("\n".join(f"wrote {p}" for p in changed) if changed else f"{args.bundle}: already up to date")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    from unet_med.bundle.build import record_fingerprint
    from unet_med.bundle.task import TaskError
    from unet_med.data.datalist import DatasetError

    try:
        fingerprint = record_fingerprint(args.bundle, args.dataset_dir)
    except (TaskError, DatasetError, OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    print(
        f"{args.bundle}/configs/task.json: fingerprint of {fingerprint['num_cases']} case(s) recorded; "
        "'unet-med predict' now checks every input against it"
    )
    return 0


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from unet_med.bundle.manifest import BundleError
    from unet_med.bundle.run import run_bundle

    try:
        overrides = parse_overrides(extra)
        run_bundle(args.bundle, args.workflow, overrides, trust_bundle_code=args.trust_bundle_code)
    except (BundleError, ValueError, OSError) as e:  # OSError: a scan's header that is too large or lies
        print(f"unet-med bundle run: {e}", file=sys.stderr)
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    from unet_med.bundle.export import export_onnx, export_torchscript
    from unet_med.bundle.manifest import BundleError
    from unet_med.bundle.recognize import require_recognized

    if not (args.torchscript or args.onnx):
        print("give --torchscript OUT.ts and/or --onnx OUT.onnx", file=sys.stderr)
        return 2
    try:
        require_recognized(args.bundle, trust_bundle_code=args.trust_bundle_code)
        for out, export in ((args.torchscript, export_torchscript), (args.onnx, export_onnx)):
            if out:
                print(export(args.bundle, out))
    except (BundleError, ImportError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def _half(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unet_med.engines.checkpoint import halve_weights

    path = Path(args.bundle) / "models" / "model.pt"
    try:
        out = halve_weights(path)
    except (FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


def register_make(commands: argparse._SubParsersAction) -> None:
    """Adds ``new``, ``build``, ``fingerprint``, ``run``, ``export`` and ``half`` to ``unet-med bundle``."""
    new = commands.add_parser("new", help="a new bundle folder from a task description")
    new.add_argument("bundle", help="folder to create")
    new.add_argument("--task", required=True, help="task description JSON (see 'unet-med plan')")
    new.set_defaults(func=_new)

    build = commands.add_parser("build", help="rewrite a bundle's configs from its configs/task.json")
    build.add_argument("bundle", help="bundle folder")
    build.add_argument("--check", action="store_true", help="only report configs that differ (exit status 1)")
    build.set_defaults(func=_build)

    fingerprint = commands.add_parser(
        "fingerprint", help="keep the training images' fingerprint in configs/task.json (predict's input check)"
    )
    fingerprint.add_argument("bundle", help="bundle folder")
    fingerprint.add_argument("--dataset_dir", required=True, help="the training dataset (MSD or paired folders)")
    fingerprint.set_defaults(func=_fingerprint)

    run = commands.add_parser(
        "run",
        help="recognise a bundle, then run its MONAI workflow",
        description="Extra '--ID VALUE' pairs override config ids, as on MONAI's command line.",
    )
    run.add_argument("bundle", help="bundle folder")
    run.add_argument("workflow", choices=("inferring", "evaluating", "training"))
    run.add_argument("--trust-bundle-code", action="store_true", help=_TRUST_HELP)
    run.set_defaults(func=_run, takes_extra=True)

    export = commands.add_parser("export", help="TorchScript / ONNX exports of a recognised bundle, made here")
    export.add_argument("bundle", help="bundle folder")
    export.add_argument("--torchscript", default=None, help="TorchScript file to write (MONAI ckpt_export layout)")
    export.add_argument("--onnx", default=None, help="ONNX file to write (needs the 'export' extra)")
    export.add_argument("--trust-bundle-code", action="store_true", help=_TRUST_HELP)
    export.set_defaults(func=_export)

    half = commands.add_parser("half", help="store the bundle's models/model.pt in float16")
    half.add_argument("bundle", help="bundle folder")
    half.set_defaults(func=_half)
