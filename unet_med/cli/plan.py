"""``unet-med plan``: fingerprint a dataset folder and write a task description for ``unet-med bundle new``.

::

    unet-med plan /data/Task09_Spleen --out spleen_task.json --name "spleen CT"
    unet-med bundle new bundles/spleen_ct --task spleen_task.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _plan(args: argparse.Namespace) -> int:
    from unet_med.bundle.build import task_from_plan
    from unet_med.bundle.task import TaskError
    from unet_med.bundle.template import config_text
    from unet_med.data.fingerprint import fingerprint_dataset
    from unet_med.data.planning import plan_from_fingerprint
    from unet_med.utils.io import atomic_path, atomic_write_json

    fingerprint = fingerprint_dataset(args.dataset_dir, seed=args.seed)
    plan = plan_from_fingerprint(
        fingerprint, max_patch_voxels=args.max_patch_voxels, max_pools=args.max_pools, base_features=args.base_features
    )
    plan["channel_names"] = list(fingerprint.get("channel_names", []))
    try:
        task = task_from_plan(plan, name=args.name)
    except TaskError as e:
        print(f"unet-med plan: the proposal is not a valid task description: {e}", file=sys.stderr)
        return 1
    with atomic_path(args.out) as tmp:
        tmp.write_text(config_text(task), encoding="utf-8")
    if args.fingerprint:
        atomic_write_json(args.fingerprint, fingerprint)
    if args.json:
        print(json.dumps(task, indent=2))
        return 0
    print(_summary(args, task, fingerprint["num_cases"]))
    return 0


def _summary(args: argparse.Namespace, task: dict[str, Any], num_cases: int) -> str:
    """What ``plan`` wrote, the main numbers of the task, and the command that makes the bundle."""
    folder = re.sub(r"[^a-z0-9]+", "_", args.name.lower()).strip("_") or Path(args.out).stem
    channels, classes = task["channels"], task["classes"]
    lines = [
        f"wrote {args.out}: the task description {task['card']['name']!r}, planned from {num_cases} case(s) of "
        f"{args.dataset_dir}",
        f"  {task['spatial_dims']}D {task['modality']}, {len(channels)} channel(s) ({', '.join(channels)}), "
        f"{len(classes)} classes ({', '.join(classes)})",
        f"  spacing {task['preprocessing']['pixdim']} mm, patch {task['patch_size']}, "
        f"features {task['network']['features']}, pooling {task['network']['pool_sizes']}",
    ]
    if args.fingerprint:
        lines.append(f"wrote {args.fingerprint}: the dataset fingerprint")
    lines += [
        "next: check or edit the task (card texts, epochs), then make the bundle:",
        f"  unet-med bundle new bundles/{folder} --task {args.out}",
    ]
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``plan`` to the ``unet-med`` command line."""
    plan = subparsers.add_parser(
        "plan",
        help="fingerprint a dataset and write a task description (spacing, patch size, pooling, normalisation)",
        description="Writes a task description; make a bundle from it with 'unet-med bundle new DIR --task FILE'.",
    )
    plan.add_argument("dataset_dir", help="MSD folder (dataset.json + imagesTr/labelsTr) or paired folders")
    plan.add_argument("--out", required=True, help="where to write the task description JSON")
    plan.add_argument("--name", default="unet_med bundle", help="the bundle's name in its model card")
    plan.add_argument("--fingerprint", default=None, help="also write the full fingerprint JSON here")
    plan.add_argument("--max-patch-voxels", type=int, default=64**3, help="training patch budget (default 64^3)")
    plan.add_argument("--max-pools", type=int, default=4, help="most poolings (4 = classic U-Net)")
    plan.add_argument("--base-features", type=int, default=16, help="first-stage width, doubled per stage")
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--json", action="store_true", help="print the task description as JSON instead of a summary")
    plan.set_defaults(func=_plan)
