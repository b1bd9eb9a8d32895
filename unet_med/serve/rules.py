"""Routing as data: which bundle segments a received series, decided by rules in a JSON file, never by code.

A rules file is a list (first match wins) of objects; every key but ``bundle`` is a condition, all must hold::

    {"rules": [
        {"bundle": "sarcoma_ct", "modality": "CT", "body_part": ["LEG", "THIGH", "EXTREMITY"]},
        {"bundle": "hippocampus_mri", "modality": "MR", "series_description": "(?i)t1.*(mprage|3d)"}
    ]}

- ``bundle``: a bundle's folder name as given to ``--bundle``.
- ``modality``: DICOM Modality, one value or a list (``CT``, ``MR``, ...).
- ``body_part``: BodyPartExamined, one value or a list (case-insensitive; a series without it does not match).
- ``series_description``: a regular expression searched in SeriesDescription.
- ``channels``: the number of channels the bundle takes; a series is one channel, so a rule for a multi-channel
  bundle never matches (the node refuses such rules when it starts).

Without a rules file each single-channel 3D bundle gets a rule from its task description: its modality
(``ct`` -> ``CT``, ``mri`` -> ``MR``). A series no rule matches is stored, logged and marked ``ignored``.

Example::

    rules = load_rules("rules.json", bundles={"sarcoma_ct": model})
    route(rules, {"Modality": "CT", "BodyPartExamined": "LEG"})  # "sarcoma_ct"
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DICOM_MODALITY", "Rule", "default_rules", "load_rules", "route"]

#: The DICOM Modality of each task modality (task.json ``modality``).
DICOM_MODALITY = {"ct": "CT", "mri": "MR", "mr": "MR", "pet": "PT"}
_KEYS = {"bundle", "modality", "body_part", "series_description", "channels"}


def _values(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip().upper() for v in items)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One routing rule: ``bundle`` for series whose headers meet every condition given."""

    bundle: str
    modality: tuple[str, ...] | None = None
    body_part: tuple[str, ...] | None = None
    series_description: str | None = None
    channels: int | None = None

    def matches(self, header: Mapping[str, Any]) -> bool:
        """Whether a series with these headers (``Modality``, ``BodyPartExamined``, ``SeriesDescription``) fits."""
        if self.channels not in (None, 1):
            return False
        if self.modality and str(header.get("Modality", "")).strip().upper() not in self.modality:
            return False
        if self.body_part and str(header.get("BodyPartExamined", "")).strip().upper() not in self.body_part:
            return False
        if self.series_description is not None:
            return re.search(self.series_description, str(header.get("SeriesDescription", ""))) is not None
        return True


def route(rules: list[Rule], header: Mapping[str, Any]) -> str | None:
    """The bundle of the first rule the series matches, or ``None``."""
    return next((r.bundle for r in rules if r.matches(header)), None)


def default_rules(bundles: Mapping[str, Any]) -> list[Rule]:
    """One rule per single-channel 3D bundle: its task modality (``BundleModel``s or ``{name: modality}``)."""
    rules = []
    for name, model in bundles.items():
        modality: str | None
        if isinstance(model, str):
            modality = model
        else:
            if model.spatial_dims != 3 or model.in_channels != 1:
                continue
            modality = _task_modality(model.root)
        if modality and modality.lower() in DICOM_MODALITY:
            rules.append(Rule(name, modality=(DICOM_MODALITY[modality.lower()],)))
    return rules


def _task_modality(root: Path) -> str | None:
    task = Path(root) / "configs" / "task.json"
    if not task.is_file():
        return None
    return json.loads(task.read_text()).get("modality")


def load_rules(path: str | os.PathLike, bundles: Mapping[str, Any]) -> list[Rule]:
    """Reads and checks a rules file against the bundles the node serves.

    Raises:
        ValueError: one line naming the file and the bad rule (unknown key or bundle, bad pattern, a rule for a
            bundle taking more channels than a series has).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON rules file ({e})") from e
    items = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f'{path}: expected {{"rules": [...]}} or a list of rules')
    rules = []
    for i, item in enumerate(items):
        where = f"{path}: rule {i + 1}"
        if not isinstance(item, dict) or "bundle" not in item:
            raise ValueError(f"{where}: a rule is an object with a 'bundle' and conditions")
        unknown = set(item) - _KEYS
        if unknown:
            known = ", ".join(sorted(_KEYS))
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {known})")
        if item["bundle"] not in bundles:
            raise ValueError(f"{where}: bundle {item['bundle']!r} is not served (served: {', '.join(bundles)})")
        pattern = item.get("series_description")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{where}: series_description {pattern!r} is not a regular expression ({e})") from e
        model = bundles[item["bundle"]]
        channels = item.get("channels", getattr(model, "in_channels", 1))
        if int(channels) != 1:
            raise ValueError(f"{where}: bundle {item['bundle']!r} takes {channels} channels; a series has one")
        rules.append(
            Rule(
                item["bundle"],
                modality=_values(item.get("modality")),
                body_part=_values(item.get("body_part")),
                series_description=pattern,
                channels=int(channels),
            )
        )
    return rules
