"""``unet-med bundle`` commands: check, pack and unpack bundles shared between sites.

- ``unet-med bundle verify DIR|ZIP [--schema FILE] [--no-onnx]``: every check, a readable report; exit status 1
  on any failure.
- ``unet-med bundle scan DIR``: the static safety scan alone (nothing is evaluated).
- ``unet-med bundle pack DIR OUT.zip [--no-onnx]``: scan, export TorchScript and ONNX, write the zip with a
  manifest of sha256 checksums.
- ``unet-med bundle unpack ZIP DIR``: check every entry and checksum, then extract.
- ``unet-med bundle half DIR``: store ``models/model.pt`` in float16 (half the size; loads into float32).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _verify(args: argparse.Namespace) -> int:
    from unet_med.bundle.verify import verify_bundle

    report = verify_bundle(args.bundle, schema=args.schema, onnx=not args.no_onnx, atol=args.atol, rtol=args.rtol)
    print(report.format())
    return 0 if report.ok else 1


def _scan(args: argparse.Namespace) -> int:
    from unet_med.bundle.scan import scan_bundle

    findings = scan_bundle(args.bundle)
    for finding in findings:
        print(finding)
    print(f"{len(findings)} unsafe construct(s) found" if findings else f"{args.bundle}: no unsafe constructs found")
    return 1 if findings else 0


def _pack(args: argparse.Namespace) -> int:
    from unet_med.bundle.manifest import BundleError
    from unet_med.bundle.pack import pack_bundle

    try:
        out = pack_bundle(args.bundle, args.out, onnx=not args.no_onnx)
    except (BundleError, ImportError) as e:
        print(e, file=sys.stderr)
        return 1
    print(out)
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from unet_med.bundle.manifest import BundleError
    from unet_med.bundle.pack import unpack_bundle

    try:
        out = unpack_bundle(args.zip, args.dest)
    except (BundleError, FileExistsError) as e:
        print(e, file=sys.stderr)
        return 1
    print(out)
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``bundle verify|scan|pack|unpack|half`` to the ``unet-med`` command line."""
    bundle = subparsers.add_parser("bundle", help="verify, pack and unpack bundles shared between sites")
    commands = bundle.add_subparsers(dest="bundle_command", required=True)

    verify = commands.add_parser("verify", help="check a bundle folder or zip before trusting it")
    verify.add_argument("bundle", help="bundle folder or packed zip")
    verify.add_argument("--schema", default=None, help="MONAI metadata schema JSON file (checked offline)")
    verify.add_argument("--no-onnx", action="store_true", help="skip the ONNX export check")
    verify.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance of the export checks")
    verify.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the export checks")
    verify.set_defaults(func=_verify)

    scan = commands.add_parser("scan", help="static safety scan of the configs and logging.conf only")
    scan.add_argument("bundle", help="bundle folder")
    scan.set_defaults(func=_scan)

    pack = commands.add_parser("pack", help="export and zip a bundle with a checksum manifest")
    pack.add_argument("bundle", help="bundle folder")
    pack.add_argument("out", help="zip file to write")
    pack.add_argument("--no-onnx", action="store_true", help="leave out models/model.onnx")
    pack.set_defaults(func=_pack)

    unpack = commands.add_parser("unpack", help="check a packed bundle completely, then extract it")
    unpack.add_argument("zip", help="packed bundle")
    unpack.add_argument("dest", help="folder to create")
    unpack.set_defaults(func=_unpack)

    half = commands.add_parser("half", help="store the bundle's models/model.pt in float16")
    half.add_argument("bundle", help="bundle folder")
    half.set_defaults(func=_half)
