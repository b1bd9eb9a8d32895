"""``unet-med bundle`` commands for cross-validation and fold ensembles.

- ``unet-med bundle cv DIR [--folds 0,1,2,3,4] [--no-report] [--apply-postprocessing] [--trust-bundle-code]
  [--ID VALUE ...]``: recognise the bundle, train each fold in turn (a finished fold is skipped, a killed one
  resumes from its ``last.pt``), then write the CV report; ``--ID VALUE`` pairs (``--dataset_dir D``,
  ``--max_epochs 50``, ``--device cuda``) apply to every fold.
- ``unet-med bundle cv-report DIR [--folds ...] [--device cpu] [--apply-postprocessing]``: score the out-of-fold
  predictions (JSON and Markdown); with ``--apply-postprocessing``, write the keep-largest-component choice into
  ``configs/task.json`` and rebuild the configs.
- ``unet-med bundle ensemble DIR [--folds 0,1,2,3,4] [--max-mb 20]``: ship the folds' best models in ``models/``
  (float16) and set ``inference.ensemble``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["parse_folds", "register_cv"]

_TRUST_HELP = "accept a bundle the installed template does not recognise (its configs are code: only on purpose)"


def parse_folds(text: str | None) -> list[int] | None:
    """``"0,1,3"`` -> ``[0, 1, 3]``; ``None`` stays ``None`` (every fold).

    Raises:
        ValueError: not comma-separated integers.
    """
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise ValueError(f"--folds takes comma-separated fold numbers (0,1,2), got {text!r}") from e


def _report(args: argparse.Namespace, folds: list[int] | None) -> None:
    from unet_med.bundle.cv_report import cv_report

    report = cv_report(
        args.bundle, folds=folds, device=args.device, apply=args.apply_postprocessing,
        trust_bundle_code=args.trust_bundle_code,
    )  # fmt: skip
    if "summary" in report:  # a membrane bundle: per-image ISBI figures
        error = report["summary"]["pixel_error"]
        print(f"{report['num_cases']} images, out-of-fold pixel error {error['mean']:.4f} ± {error['std']:.4f}")
        return
    post = report["postprocessed"]["mean_dice"]
    print(f"{report['num_cases']} cases, out-of-fold mean Dice {post:.4f} with the chosen post-processing")
    print(f"keep_largest_component: {report['chosen_keep_largest_component']}")


def _cv(args: argparse.Namespace, extra: list[str]) -> int:
    from unet_med.bundle.cv import run_cv
    from unet_med.bundle.manifest import BundleError
    from unet_med.cli.bundle_make import parse_overrides

    try:
        folds = parse_folds(args.folds)
        overrides = parse_overrides(extra)
        if "device" in overrides and args.device == "cpu":
            args.device = str(overrides["device"])
        trained = run_cv(args.bundle, folds, overrides, trust_bundle_code=args.trust_bundle_code)
        print(f"trained folds {trained}" if trained else "every fold had finished before")
        if not args.no_report:
            _report(args, folds)
    except (BundleError, ValueError, FileNotFoundError) as e:
        print(f"unet-med bundle cv: {e}", file=sys.stderr)
        return 2
    return 0


def _cv_report(args: argparse.Namespace) -> int:
    from unet_med.bundle.manifest import BundleError

    try:
        _report(args, parse_folds(args.folds))
    except (BundleError, ValueError, FileNotFoundError) as e:
        print(f"unet-med bundle cv-report: {e}", file=sys.stderr)
        return 2
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from unet_med.bundle.ship_ensemble import ship_ensemble

    try:
        written = ship_ensemble(args.bundle, parse_folds(args.folds), max_bytes=int(args.max_mb * 1e6))
    except (ValueError, FileNotFoundError) as e:
        print(f"unet-med bundle ensemble: {e}", file=sys.stderr)
        return 2
    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} members, {total / 1e6:.1f} MB: " + ", ".join(str(p) for p in written))
    return 0


def register_cv(commands: argparse._SubParsersAction) -> None:
    """Adds ``cv``, ``cv-report`` and ``ensemble`` to ``unet-med bundle``."""
    folds_help = "comma-separated folds (default: all num_folds)"
    cv = commands.add_parser(
        "cv",
        help="train every cross-validation fold of a recognised bundle, then report",
        description="Extra '--ID VALUE' pairs (--dataset_dir D, --max_epochs N) apply to every fold.",
    )
    cv.add_argument("bundle", help="bundle folder")
    cv.add_argument("--folds", default=None, help=folds_help)
    cv.add_argument("--no-report", action="store_true", help="train only; no out-of-fold report")
    cv.add_argument("--apply-postprocessing", action="store_true", help="write the CV-chosen post-processing")
    cv.add_argument("--trust-bundle-code", action="store_true", help=_TRUST_HELP)
    cv.set_defaults(func=_cv, takes_extra=True, device="cpu")

    report = commands.add_parser("cv-report", help="score the out-of-fold predictions of a cross-validation")
    report.add_argument("bundle", help="bundle folder")
    report.add_argument("--folds", default=None, help=folds_help)
    report.add_argument("--device", default="cpu", help="where the windows run (cpu, cuda)")
    report.add_argument("--apply-postprocessing", action="store_true", help="write the CV-chosen post-processing")
    report.add_argument("--trust-bundle-code", action="store_true", help=_TRUST_HELP)
    report.set_defaults(func=_cv_report)

    ensemble = commands.add_parser("ensemble", help="ship the folds' best models as a float16 fold ensemble")
    ensemble.add_argument("bundle", help="bundle folder")
    ensemble.add_argument("--folds", default=None, help="folds to ship, in member order (default: every finished)")
    ensemble.add_argument("--max-mb", type=float, default=20.0, help="largest total size of the members (MB)")
    ensemble.set_defaults(func=_ensemble)
