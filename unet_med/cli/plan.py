"""``unet-med plan``: fingerprint a dataset folder and propose bundle settings as a config overlay."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def _plan(args: argparse.Namespace) -> int:
    from unet_med.data.fingerprint import fingerprint_dataset
    from unet_med.data.planning import plan_from_fingerprint, write_plan
    from unet_med.utils.io import atomic_write_json

    fingerprint = fingerprint_dataset(args.dataset_dir, seed=args.seed)
    overlay = plan_from_fingerprint(
        fingerprint, max_patch_voxels=args.max_patch_voxels, max_pools=args.max_pools, base_features=args.base_features
    )
    write_plan(args.out, overlay)
    if args.fingerprint:
        atomic_write_json(args.fingerprint, fingerprint)
    print(json.dumps(overlay, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``plan`` to the ``unet-med`` command line."""
    plan = subparsers.add_parser(
        "plan",
        help="fingerprint a dataset and propose spacing, patch size, pooling and normalisation",
        description="Writes a JSON overlay to pass after a bundle's train.json: "
        "--config_file \"['configs/train.json','plan.json']\".",
    )
    plan.add_argument("dataset_dir", help="MSD folder (dataset.json + imagesTr/labelsTr) or paired folders")
    plan.add_argument("--out", required=True, help="where to write the overlay JSON")
    plan.add_argument("--fingerprint", default=None, help="also write the full fingerprint JSON here")
    plan.add_argument("--max-patch-voxels", type=int, default=64**3, help="training patch budget (default 64^3)")
    plan.add_argument("--max-pools", type=int, default=4, help="most poolings (4 = classic U-Net)")
    plan.add_argument("--base-features", type=int, default=16, help="first-stage width, doubled per stage")
    plan.add_argument("--seed", type=int, default=0)
    plan.set_defaults(func=_plan)
