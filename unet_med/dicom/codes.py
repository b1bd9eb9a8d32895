"""Coded concepts for a bundle's classes: what each segment or ROI is, in words a PACS and a TPS understand.

The codes are data: a task description's ``class_codes`` gives, per foreground class, a segmented property
category (DICOM CID 7150: anatomical structure, tissue, morphologically abnormal structure, ...) and a type
(CID 7151 anatomy, CID 7159 lesion and tumour sub-regions), each a ``{"scheme", "value", "meaning"}`` triple::

    "class_codes": {
        "tumour": {
            "category": {"scheme": "SCT", "value": "49755003", "meaning": "Morphologically Abnormal Structure"},
            "type": {"scheme": "SCT", "value": "108369006", "meaning": "Neoplasm"}
        }
    }

:func:`class_concepts` turns them, with the class names, into one :class:`ClassConcept` per foreground class; a DICOM
SEG needs a code for every segment, an RTSTRUCT only the names (the interpreted type follows the category).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ClassConcept", "class_concepts", "display_color", "to_code"]

#: Display colours (RGB) of segments and ROIs 1, 2, ... (cycled): distinct on a grey CT or MR.
PALETTE = ((255, 0, 0), (0, 200, 0), (0, 100, 255), (255, 200, 0), (200, 0, 255), (0, 220, 220), (255, 120, 0))
#: SNOMED CT category codes (CID 7150) and the RT ROI Interpreted Type each implies.
_RT_TYPE_BY_CATEGORY = {"91723000": "ORGAN", "85756007": "ORGAN", "49755003": "GTV"}


@dataclasses.dataclass(frozen=True)
class ClassConcept:
    """One foreground class as a DICOM segment / ROI.

    Attributes:
        label: its value in the label map (1, 2, ...).
        name: the class name (segment label, ROI name).
        category: ``{"scheme", "value", "meaning"}`` or ``None`` when the task gives no code.
        type: likewise.
    """

    label: int
    name: str
    category: dict[str, str] | None = None
    type: dict[str, str] | None = None

    @property
    def rt_interpreted_type(self) -> str:
        """RTROIInterpretedType: ``ORGAN`` for anatomy and tissue, ``GTV`` for a tumour, else empty (Type 2)."""
        return _RT_TYPE_BY_CATEGORY.get((self.category or {}).get("value", ""), "")

    def codes(self) -> tuple[Any, Any]:
        """The category and type as ``pydicom.sr.coding.Code`` (for highdicom).

        Raises:
            ValueError: the task gives no code for this class.
        """
        if self.category is None or self.type is None:
            raise ValueError(
                f"class {self.name!r} has no coded concept (task.json class_codes): a DICOM SEG segment needs a "
                "category and a type code"
            )
        return to_code(self.category), to_code(self.type)


def display_color(label: int) -> tuple[int, int, int]:
    """The RGB display colour of foreground class ``label`` (1, 2, ...), the same in SEG and RTSTRUCT."""
    return PALETTE[(label - 1) % len(PALETTE)]


def to_code(concept: Mapping[str, str]) -> Any:
    """``{"scheme", "value", "meaning"}`` as a ``pydicom.sr.coding.Code``."""
    from pydicom.sr.coding import Code

    return Code(value=str(concept["value"]), scheme_designator=str(concept["scheme"]), meaning=str(concept["meaning"]))


def class_concepts(class_names: Sequence[str], class_codes: Mapping[str, Any] | None = None) -> list[ClassConcept]:
    """One :class:`ClassConcept` per foreground class (label 1 onwards; label 0 is background).

    Example::

        class_concepts(["background", "tumour"], {"tumour": {"category": {...}, "type": {...}}})
        # [ClassConcept(label=1, name='tumour', category={...}, type={...})]
    """
    codes = dict(class_codes or {})
    return [
        ClassConcept(
            label=i, name=str(name), category=codes.get(name, {}).get("category"), type=codes.get(name, {}).get("type")
        )
        for i, name in enumerate(class_names)
        if i > 0
    ]
