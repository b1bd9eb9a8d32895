"""Patient and study attributes copied into results: mended to be valid, the source's headers left alone."""

from __future__ import annotations

import numpy as np

from tests.dicom.make_series import ct_dataset
from unet_med.dicom.source import mended_headers


def test_absent_and_over_long_values_are_mended_in_copies_only():
    source = ct_dataset(np.zeros((4, 4), np.int16), (0.0, 0.0, 0.0), "1.2.3", 1)
    source.StudyID = "IBSI_1_STS_019_CT"  # 17 characters; SH allows 16
    del source.PatientBirthDate
    (mended,) = mended_headers([source])
    assert mended.StudyID == "IBSI_1_STS_019_C" and mended.PatientBirthDate == ""
    assert source.StudyID == "IBSI_1_STS_019_CT" and "PatientBirthDate" not in source
    assert mended.SOPInstanceUID == source.SOPInstanceUID and mended.Rows == 4


def test_valid_headers_are_not_copied():
    source = ct_dataset(np.zeros((4, 4), np.int16), (0.0, 0.0, 0.0), "1.2.3", 1)
    assert mended_headers([source])[0] is source
