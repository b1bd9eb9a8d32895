"""What the DICOM objects unet_med writes take from their source series: patient and study, made valid.

Results go back into the source's study (same patient, same StudyInstanceUID) as a new series with new UIDs. The
patient and study attributes are copied; real exports often break the value limits (a 17-character StudyID, an
absent PatientBirthDate), which would make the result fail validation (``dciodvfy``) for the source's fault. The
copies are mended: absent Type 2 attributes become empty, over-long short strings are cut to their VR's limit.
Nothing of it is logged (patient data stays out of logs).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["PATIENT_STUDY_KEYWORDS", "mended_headers", "quiet_header_warnings"]

#: Patient and General Study attributes (Type 2: present, possibly empty) copied into results.
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
#: Largest value length of the short string VRs these attributes use.
_MAX_LENGTH = {"SH": 16, "LO": 64, "CS": 16}


def mended_headers(datasets: Sequence[Any]) -> list[Any]:
    """``datasets`` with their patient and study attributes present and within their VR limits.

    A dataset that needs no mending is returned as it is; one that does is replaced by a new dataset sharing its
    other elements (the source's headers are never changed).
    """
    from pydicom.dataset import Dataset

    out = []
    for ds in datasets:
        fixes = _fixes(ds)
        if fixes:
            mended = Dataset()
            mended.update(ds)  # the same element objects; the mended ones are replaced below, not changed
            if hasattr(ds, "file_meta"):
                mended.file_meta = ds.file_meta
            for keyword, value in fixes.items():
                if keyword in mended:
                    del mended[keyword]
                setattr(mended, keyword, value)
            ds = mended
        out.append(ds)
    return out


def _fixes(ds: Any) -> dict[str, str]:
    """The mended value per attribute of ``ds`` that is absent or longer than its VR allows."""
    fixes = {}
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword not in ds or ds[keyword].value is None:
            fixes[keyword] = ""
            continue
        element = ds[keyword]
        limit = _MAX_LENGTH.get(element.VR)
        if limit and isinstance(element.value, str) and len(element.value) > limit:
            fixes[keyword] = element.value[:limit]
    return fixes


@contextlib.contextmanager
def quiet_header_warnings() -> Iterator[None]:
    """pydicom's and highdicom's value warnings off while a result is built from the source's headers: they quote
    the value (highdicom: 'The string "<patient name>" is unlikely to represent the intended person name'), and
    patient names must not reach a console or a log. The values are copied as the source holds them."""
    with warnings.catch_warnings():
        for module in ("pydicom", "highdicom"):
            warnings.filterwarnings("ignore", category=UserWarning, module=module)
        yield
