"""Label maps to BraTS regions."""

from __future__ import annotations

import pytest
import torch

from unet_med.transforms import BRATS_REGIONS, LabelToRegionsd, label_to_regions


def test_brats_regions_by_hand():
    label = torch.tensor([[0, 1, 2, 3, 4]]).reshape(1, 5, 1, 1)
    regions = label_to_regions(label, BRATS_REGIONS)[:, :, 0, 0]
    assert regions.tolist() == [[0, 1, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1]]


def test_dictionary_version_and_bad_input():
    out = LabelToRegionsd(keys=["pred", "label"])(
        {"pred": torch.zeros(1, 2, 2, 2), "label": torch.full((1, 2, 2, 2), 4)}
    )
    assert out["pred"].shape == (3, 2, 2, 2) and float(out["label"].sum()) == 24.0  # label 4 lies in all three regions
    with pytest.raises(ValueError, match="one channel"):
        label_to_regions(torch.zeros(2, 4, 4), BRATS_REGIONS)
