"""``unet-med`` data commands.

- ``unet-med demo-data --out DIR [--dims 3]``: write the synthetic demo set (an MSD-style folder).
- ``unet-med check-data DIR --num-classes K [--in-channels C]``: check a dataset folder the way training does and
  list every bad file; exit status 1 if any.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _demo_data(args: argparse.Namespace) -> int:
    from unet_med.data import make_demo_dataset_2d, make_demo_dataset_3d

    if args.dims == 3:
        out = make_demo_dataset_3d(
            args.out, num_cases=args.num_cases or 24, num_classes=args.num_classes, seed=args.seed
        )
    else:
        out = make_demo_dataset_2d(
            args.out, num_cases=args.num_cases or 20, num_classes=args.num_classes, fmt=args.fmt, seed=args.seed
        )
    print(out)
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from unet_med.data import DatasetError, check_dataset, load_datalist

    try:
        items = load_datalist(args.dataset_dir)
        check_dataset(items, num_classes=args.num_classes, in_channels=args.in_channels, spatial_dims=args.dims)
    except DatasetError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{len(items)} cases in {args.dataset_dir}: no problems found")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``demo-data`` and ``check-data`` to the ``unet-med`` command line."""
    demo = subparsers.add_parser("demo-data", help="write a synthetic labelled demo dataset (MSD-style folder)")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--dims", type=int, choices=(2, 3), default=3)
    demo.add_argument("--num-cases", type=int, default=None, help="default: 24 (3D) or 20 (2D)")
    demo.add_argument("--num-classes", type=int, default=3)
    demo.add_argument("--fmt", choices=("png", "tif"), default="png", help="2D file format")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo_data)

    check = subparsers.add_parser("check-data", help="check a dataset folder before training")
    check.add_argument("dataset_dir")
    check.add_argument("--num-classes", type=int, required=True, help="classes including background")
    check.add_argument("--in-channels", type=int, default=1)
    check.add_argument("--dims", type=int, choices=(2, 3), default=3)
    check.set_defaults(func=_check_data)
