"""``unet-med bundle`` commands for bundles shared between sites: recognise, verify, sign, pack and unpack.

- ``unet-med bundle verify DIR|ZIP [--schema FILE] [--no-onnx] [--trusted-keys DIR [--allow-unsigned]]
  [--trust-bundle-code]``: every check, a readable report; exit status 1 on any failure. With ``--trusted-keys``,
  the signature is checked first and a refused one stops everything else.
- ``unet-med bundle recognize DIR``: recognition alone (nothing of the bundle is evaluated); exit status 1 and
  every place of custom code when it is not what the installed template makes.
- ``unet-med bundle keygen --private K.pem --public K.pub.pem``: an Ed25519 key pair for signing.
- ``unet-med bundle sign DIR --key K.pem --signer "Name, Hospital"``: a manifest of every file, signed.
- ``unet-med bundle pack DIR OUT.zip [--key K.pem --signer NAME]``: recognise, then write the zip with a manifest of
  sha256 checksums (signed when a key is given).
- ``unet-med bundle unpack ZIP DIR``: check every bound, entry and checksum, then extract; a refusal is one line
  on stderr.

Making and running bundles (``new``, ``build``, ``run``, ``export``, ``half``) is in
:mod:`unet_med.cli.bundle_make`; cross-validation and fold ensembles (``cv``, ``cv-report``, ``ensemble``) in
:mod:`unet_med.cli.bundle_cv`.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]

_TRUST_HELP = "accept a bundle the installed template does not recognise (its configs are code: only on purpose)"


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
        trust_bundle_code=args.trust_bundle_code,
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


def _recognize(args: argparse.Namespace) -> int:
    from unet_med.bundle.recognize import recognize_bundle

    result = recognize_bundle(args.bundle)
    print(result.format())
    return 0 if result.ok else 1


def _pack(args: argparse.Namespace) -> int:
    from unet_med.bundle.manifest import BundleError
    from unet_med.bundle.pack import pack_bundle

    if (args.key is None) != (args.signer is None):
        print("give both --key and --signer to sign the packed bundle, or neither", file=sys.stderr)
        return 2
    try:
        out = pack_bundle(
            args.bundle, args.out, key=args.key, signer=args.signer, trust_bundle_code=args.trust_bundle_code
        )
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``bundle verify|recognize|keygen|sign|pack|unpack`` and the ``bundle_make`` commands."""
    from unet_med.cli.bundle_cv import register_cv
    from unet_med.cli.bundle_make import register_make

    bundle = subparsers.add_parser("bundle", help="make, check, run and share bundles")
    commands = bundle.add_subparsers(dest="bundle_command", required=True)
    register_make(commands)
    register_cv(commands)

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
    verify.add_argument("--trust-bundle-code", action="store_true", help=_TRUST_HELP)
    verify.set_defaults(func=_verify)

    recognize = commands.add_parser("recognize", help="is the bundle exactly what the installed template makes?")
    recognize.add_argument("bundle", help="bundle folder")
    recognize.set_defaults(func=_recognize)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("--private", required=True, help="private key to write (PEM, mode 0600)")
    keygen.add_argument("--public", required=True, help="public key to write (PEM), for receiving sites")
    keygen.set_defaults(func=_keygen)

    sign = commands.add_parser("sign", help="write a manifest of every file and sign it")
    sign.add_argument("bundle", help="bundle folder")
    sign.add_argument("--key", required=True, help="private key (PEM, from 'unet-med bundle keygen')")
    sign.add_argument("--signer", required=True, help='who signs, as receivers will read it: "Name, Hospital"')
    sign.set_defaults(func=_sign)

    pack = commands.add_parser("pack", help="zip a recognised bundle with a checksum manifest")
    pack.add_argument("bundle", help="bundle folder")
    pack.add_argument("out", help="zip file to write")
    pack.add_argument("--trust-bundle-code", action="store_true", help=_TRUST_HELP)
    pack.add_argument("--key", default=None, help="sign the packed manifest with this private key (PEM)")
    pack.add_argument("--signer", default=None, help='who signs, with --key: "Name, Hospital"')
    pack.set_defaults(func=_pack)

    unpack = commands.add_parser("unpack", help="check a packed bundle completely, then extract it")
    unpack.add_argument("zip", help="packed bundle")
    unpack.add_argument("dest", help="folder to create")
    unpack.set_defaults(func=_unpack)
