"""Is a scan like the training data? A cheap check of each input against the task's training fingerprint.

A bundle's task may keep the fingerprint of its training images (``configs/task.json`` ``fingerprint``, written by
``unet-med bundle fingerprint``; see :func:`unet_med.data.fingerprint.input_fingerprint`). ``unet-med predict``
measures every input the same way (:func:`unet_med.data.fingerprint.image_summary`, from the array it has loaded
anyway) and warns where the input lies outside what the network was trained on. The rules allow a tolerance
around the training range, so that a scan like the training scans passes, and one from elsewhere does not:

- channels: the same count;
- volumes only (pictures carry no physical size): the voxel spacing per axis within the training range widened
  by :data:`SPACING_FACTOR` each way, and the field of view (extent, mm) per axis within the training range
  widened by :data:`EXTENT_FACTOR` each way;
- per channel, where the median sits between the 0.5th and 99.5th percentiles (``median_position``, scale-free, so
  it holds for MRI in any units): within the training range +- :data:`POSITION_MARGIN`. A whole-head MRI given to
  a model of hippocampus crops has its median in the background (0), the crops near the middle;
- CT only (calibrated units, HU): the 0.5th, 50th and 99.5th percentiles within the training range
  +- :data:`HU_MARGIN` of the training intensity span.

A warning says the prediction is outside what the model was tested on; it does not say the mask is wrong.

Example::

    summary = image_summary([ct], affine, 3)
    result = check_input(summary, task["fingerprint"], modality="ct", channel_names=["CT"])
    result.warnings  # ["spacing 0.57x0.57x5.00 mm, trained on 0.98x0.98x3.27 mm (x1.5 tolerance)"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "EXTENT_FACTOR",
    "HU_MARGIN",
    "POSITION_MARGIN",
    "SPACING_FACTOR",
    "InputCheck",
    "check_input",
    "loaded_channels",
]

#: Spacing per axis may be this factor finer or coarser than the finest / coarsest training case.
SPACING_FACTOR = 1.5
#: The field of view per axis may be this factor smaller or larger than the smallest / largest training case.
EXTENT_FACTOR = 2.0
#: ``median_position`` may lie this far (0 to 1 scale) outside its training range.
POSITION_MARGIN = 0.15
#: CT percentiles may lie this fraction of the training intensity span (lowest p0.5 to highest p99.5) outside
#: their training range.
HU_MARGIN = 0.1


@dataclasses.dataclass
class InputCheck:
    """The outcome for one input.

    Attributes:
        checks: one entry per comparison: ``name``, ``value``, ``expected`` (the accepted range, tolerance
            included) and ``ok``.
        warnings: one line per failed comparison, naming the value and the training range.
    """

    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"checks": self.checks, "warnings": self.warnings}

    def _add(self, name: str, value: Any, expected: Any, ok: bool, warning: str) -> None:
        self.checks.append({"name": name, "value": value, "expected": expected, "ok": bool(ok)})
        if not ok:
            self.warnings.append(warning)


def _x(values: Sequence[float], digits: int = 2) -> str:
    return "x".join(f"{v:.{digits}f}" for v in values)


def _trained(low: Sequence[float], high: Sequence[float], digits: int) -> str:
    return _x(low, digits) if list(low) == list(high) else f"{_x(low, digits)} to {_x(high, digits)}"


def _geometry(result: InputCheck, summary: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    for key, factor, digits, what in (
        ("spacing", SPACING_FACTOR, 2, "spacing"),
        ("extent", EXTENT_FACTOR, 0, "field of view"),
    ):
        if key not in summary or key not in fingerprint:
            continue
        low, high = fingerprint[key]["min"], fingerprint[key]["max"]
        accepted = [[lo / factor, hi * factor] for lo, hi in zip(low, high, strict=True)]
        value = summary[key]
        ok = len(value) == len(accepted) and all(a <= v <= b for v, (a, b) in zip(value, accepted, strict=True))
        warning = f"{what} {_x(value, digits)} mm, trained on {_trained(low, high, digits)} mm (x{factor:g} tolerance)"
        result._add(key, value, [[round(a, 4), round(b, 4)] for a, b in accepted], ok, warning)


def _intensity(
    result: InputCheck, summary: dict[str, Any], fingerprint: dict[str, Any], modality: str, names: Sequence[str]
) -> None:
    for c, (stats, trained) in enumerate(zip(summary["intensity"], fingerprint.get("intensity", []), strict=False)):
        name = names[c] if c < len(names) else f"channel {c}"
        low, high = trained["median_position"]
        value = stats["median_position"]
        accepted = [max(0.0, low - POSITION_MARGIN), min(1.0, high + POSITION_MARGIN)]
        result._add(
            f"{name} median_position",
            value,
            accepted,
            accepted[0] <= value <= accepted[1],
            f"{name} intensity median at {value:.2f} of its range, trained on {low:.2f} to {high:.2f} "
            f"(+-{POSITION_MARGIN:g}): {'mostly background or one value' if value < low else 'an unusual histogram'}",
        )
        if modality != "ct":
            continue
        margin = HU_MARGIN * (trained["p99_5"][1] - trained["p00_5"][0])
        for stat, label in (("p00_5", "0.5th"), ("p50", "50th"), ("p99_5", "99.5th")):
            low, high = trained[stat]
            value = stats[stat]
            accepted = [low - margin, high + margin]
            result._add(
                f"{name} {stat}",
                round(value, 2),
                [round(accepted[0], 2), round(accepted[1], 2)],
                accepted[0] <= value <= accepted[1],
                f"{name} {label} percentile {value:.0f} HU, trained on {low:.0f} to {high:.0f} HU (+-{margin:.0f})",
            )


def check_input(
    summary: dict[str, Any], fingerprint: dict[str, Any], modality: str, channel_names: Sequence[str] = ()
) -> InputCheck:
    """Compares an input's :func:`~unet_med.data.fingerprint.image_summary` with the training fingerprint.

    Args:
        summary: the input's summary.
        fingerprint: the task's ``fingerprint``.
        modality: the task's modality (``"ct"`` adds the checks in HU).
        channel_names: the task's channel names, for the messages.

    Returns:
        Every comparison and a warning line for each that failed (empty when the input looks like training data).
    """
    result = InputCheck()
    channels, trained = summary["channels"], fingerprint.get("channels", summary["channels"])
    result._add("channels", channels, trained, channels == trained, f"{channels} channels, trained on {trained}")
    _geometry(result, summary, fingerprint)
    _intensity(result, summary, fingerprint, modality, list(channel_names))
    return result


def loaded_channels(image: Any) -> list[np.ndarray]:
    """The channels of an image as ``LoadImage`` returns it (channel axis where its ``original_channel_dim`` says).

    Returns:
        One spatial array per channel (views, no copy).
    """
    array = image.array if hasattr(image, "array") else np.asarray(image)  # a MetaTensor's numpy view
    ch_dim = getattr(image, "meta", {}).get("original_channel_dim", float("nan"))
    has_channel = isinstance(ch_dim, int) or (isinstance(ch_dim, str) and ch_dim != "no_channel")
    if not has_channel:
        return [array]
    return list(np.moveaxis(array, int(ch_dim), 0))
