"""Why a bundle is refused, in words that point at the file that changed and the next step.

:func:`unet_med.bundle.recognize.require_recognized` refuses a bundle for one of four reasons, each with its own
next step:

- a file changed after the bundle was packed (its sha256 differs from ``manifest.json``): unpack the received zip
  again, or ask the sender;
- ``configs/task.json`` was edited after the configs were built (it is newer than every config that differs): run
  ``unet-med bundle build DIR``;
- a received bundle, unchanged since packing, that the installed template does not make: ask the sender (another
  unet_med version at the sender causes this too), or accept its code with ``--trust-bundle-code``;
- a config edited by hand, or custom code: put the change in ``configs/task.json`` and rebuild, or accept the code.

Example::

    not_recognised(Path("bundles/my_task"), ["configs/metadata.json: description: ..."], Integrity())
"""

from __future__ import annotations

from pathlib import Path

from unet_med.bundle.integrity import Integrity
from unet_med.bundle.manifest import MANIFEST, SIGNATURE

__all__ = ["TRUST_FLAG", "changed_after_packing", "not_recognised"]

#: The command-line flag that accepts a bundle's custom code on purpose.
TRUST_FLAG = "--trust-bundle-code"
_OWN_FILES = ("configs/task.json", "configs/datalist.json")  # written by people, not by the template


def _files_in(problems: list[str]) -> list[str]:
    """The files named by problems (``configs/metadata.json: ...`` -> ``configs/metadata.json``), in order."""
    return list(dict.fromkeys(p.split(":", 1)[0] for p in problems))


def _named(files: list[str]) -> str:
    return ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")


def _match(files: list[str]) -> str:
    return "matches" if len(files) == 1 else "match"


def _task_edited(root: Path, files: list[str]) -> bool:
    """Whether only template-made configs differ and ``configs/task.json`` was written after every one of them."""
    task = root / "configs" / "task.json"
    if not files or not task.is_file() or any(f in _OWN_FILES or not f.startswith("configs/") for f in files):
        return False
    if not all((root / f).is_file() for f in files):
        return False
    return all((root / f).stat().st_mtime_ns < task.stat().st_mtime_ns for f in files)


def changed_after_packing(root: Path, problems: list[str], integrity: Integrity) -> str:
    """The refusal of a bundle whose files are no longer what its ``manifest.json`` lists (or badly signed)."""
    changed = integrity.changed
    if not changed:
        pinned = any(p.startswith(("unsigned", SIGNATURE)) for p in integrity.problems)
        return f"{root}: refused: " + (
            "this site pins senders' keys and the bundle's signature does not pass (see below); check the zip "
            "with unet-med bundle verify ZIP, or ask the sender for a signed version"
            if pinned
            else f"its files are not the ones {MANIFEST} lists (see below); unpack the zip again, or ask the "
            "sender for a new version"
        )
    what = f"{_named(changed)} changed after the bundle was packed"
    if "configs/task.json" in changed and problems:
        files = _files_in(problems)
        what += f", so {_named(files)} no longer {_match(files)} what the template makes from it"
    return (
        f"{root}: refused: {what} ({MANIFEST} holds the sha256 of every file as sent). A received bundle runs as it "
        f"was sent: unpack the zip again (check it with unet-med bundle verify ZIP), or ask the sender for a new "
        f"version; a bundle of your own changed on purpose: sign it again (unet-med bundle sign) or delete "
        f"{MANIFEST} and {SIGNATURE}"
    )


def not_recognised(root: Path, problems: list[str], integrity: Integrity) -> str:
    """The refusal of a bundle that is not what the installed template makes from its task description."""
    files = _files_in(problems)
    differ = f"{_named(files)} {'differs' if len(files) == 1 else 'differ'}"
    if not integrity.manifest and _task_edited(root, files):
        return (
            f"{root}: refused: configs/task.json was edited after the configs were built, so {_named(files)} no "
            f"longer {_match(files)} what the template makes from it; run unet-med bundle build {root} to render "
            f"them again"
        )
    if integrity.manifest:
        return (
            f"{root}: refused: the bundle arrived this way (its files match {MANIFEST}), but {differ} from what the "
            f"installed unet_med template makes from its configs/task.json, so running it would run configs this "
            f"site does not write (a sender on another unet_med version causes this too: compare 'created_by' in "
            f"{MANIFEST}); ask the sender, or pass {TRUST_FLAG} to run its code on purpose"
        )
    return (
        f"{root}: refused: {differ} from what the installed unet_med template makes from configs/task.json. If you "
        f"edited a config by hand, make the change in configs/task.json and run unet-med bundle build {root}; "
        f"otherwise the bundle holds code this site does not have: pass {TRUST_FLAG} only to run it on purpose"
    )
