"""``unet-med bundle`` commands: check, sign, pack and unpack bundles shared between sites.

- ``unet-med bundle verify DIR|ZIP [--schema FILE] [--no-onnx] [--trusted-keys DIR [--allow-unsigned]]``: every
  check, a readable report; exit status 1 on any failure. With ``--trusted-keys``, the signature is checked first
  and a refused one stops everything else.
- ``unet-med bundle scan DIR``: the static safety scan alone (nothing is evaluated).
- ``unet-med bundle keygen --private K.pem --public K.pub.pem``: an Ed25519 key pair for signing.
- ``unet-med bundle sign DIR --key K.pem --signer "Name, Hospital"``: a manifest of every file, signed.
- ``unet-med bundle pack DIR OUT.zip [--no-onnx] [--key K.pem --signer NAME]``: scan, export TorchScript and
  ONNX, write the zip with a manifest of sha256 checksums (signed when a key is given).
- ``unet-med bundle unpack ZIP DIR``: check every bound, entry and checksum, then extract; a refusal is one line
  on stderr.
- ``unet-med bundle half DIR``: store ``models/model.pt`` in float16 (half the size; loads into float32).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _verify(args: argparse.Namespace) -> int:
    from unet_med.bundle.verify import verify_bundle

    if args.allow_unsigned and args.trusted_keys is None:
        print("--allow-unsigned needs --trusted-keys (without it no signature is checked)", file=sys.stderr)
        return 2
    report = verify_bundle(
        args.bundle,
        schema=args.schema,
        onnx=not args.no_onnx,
        atol=args.atol,
        rtol=args.rtol,
        trusted_keys=args.trusted_keys,
        allow_unsigned=args.allow_unsigned,
    )
    print(report.format())
    return 0 if report.ok else 1


def _keygen(args: argparse.Namespace) -> int:
    from unet_med.bundle.signing import generate_key

    try:
        kid = generate_key(args.private, args.public)
    except OSError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"key {kid}: private {args.private} (keep it here), public {args.public} (give it to receiving sites)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from unet_med.bundle.signing import sign_bundle

    try:
        out = sign_bundle(args.bundle, args.key, args.signer)
    except (ValueError, OSError) as e:  # ValueError: a BundleError, or a signer that is not one line
        print(e, file=sys.stderr)
        return 1
    print(out)
    return 0


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

    if (args.key is None) != (args.signer is None):
        print("give both --key and --signer to sign the packed bundle, or neither", file=sys.stderr)
        return 2
    try:
        out = pack_bundle(args.bundle, args.out, onnx=not args.no_onnx, key=args.key, signer=args.signer)
    except (BundleError, ImportError, OSError) as e:
        print(e, file=sys.stderr)
        return 1
    print(out)
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from unet_med.bundle.manifest import BundleError
    from unet_med.bundle.pack import unpack_bundle

    try:
        out = unpack_bundle(args.zip, args.dest)
    except (BundleError, OSError) as e:  # OSError: the zip cannot be read, or dest exists or cannot be written
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
    """Adds ``bundle verify|scan|keygen|sign|pack|unpack|half`` to the ``unet-med`` command line."""
    bundle = subparsers.add_parser("bundle", help="verify, pack and unpack bundles shared between sites")
    commands = bundle.add_subparsers(dest="bundle_command", required=True)

    verify = commands.add_parser("verify", help="check a bundle folder or zip before trusting it")
    verify.add_argument("bundle", help="bundle folder or packed zip")
    verify.add_argument("--schema", default=None, help="MONAI metadata schema JSON file (checked offline)")
    verify.add_argument("--no-onnx", action="store_true", help="skip the ONNX export check")
    verify.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance of the export checks")
    verify.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the export checks")
    verify.add_argument(
        "--trusted-keys", default=None, metavar="DIR", help="folder of pinned senders' public keys (*.pem)"
    )
    verify.add_argument(
        "--allow-unsigned", action="store_true", help="with --trusted-keys, accept a bundle without any signature"
    )
    verify.set_defaults(func=_verify)

    scan = commands.add_parser("scan", help="static safety scan of the configs and logging.conf only")
    scan.add_argument("bundle", help="bundle folder")
    scan.set_defaults(func=_scan)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("--private", required=True, help="private key to write (PEM, mode 0600)")
    keygen.add_argument("--public", required=True, help="public key to write (PEM), for receiving sites")
    keygen.set_defaults(func=_keygen)

    sign = commands.add_parser("sign", help="write a manifest of every file and sign it")
    sign.add_argument("bundle", help="bundle folder")
    sign.add_argument("--key", required=True, help="private key (PEM, from 'unet-med bundle keygen')")
    sign.add_argument("--signer", required=True, help='who signs, as receivers will read it: "Name, Hospital"')
    sign.set_defaults(func=_sign)

    pack = commands.add_parser("pack", help="export and zip a bundle with a checksum manifest")
    pack.add_argument("bundle", help="bundle folder")
    pack.add_argument("out", help="zip file to write")
    pack.add_argument("--no-onnx", action="store_true", help="leave out models/model.onnx")
    pack.add_argument("--key", default=None, help="sign the packed manifest with this private key (PEM)")
    pack.add_argument("--signer", default=None, help='who signs, with --key: "Name, Hospital"')
    pack.set_defaults(func=_pack)

    unpack = commands.add_parser("unpack", help="check a packed bundle completely, then extract it")
    unpack.add_argument("zip", help="packed bundle")
    unpack.add_argument("dest", help="folder to create")
    unpack.set_defaults(func=_unpack)

    half = commands.add_parser("half", help="store the bundle's models/model.pt in float16")
    half.add_argument("bundle", help="bundle folder")
    half.set_defaults(func=_half)
