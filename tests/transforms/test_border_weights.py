"""Tests for unet_med.transforms.border_weights: the U-Net paper's weight map and its place in the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from unet_med.transforms import BorderWeightd, border_weight_map, microscopy_augmentation

CELL, BORDER = 0, 1


def _three_cells() -> np.ndarray:
    """Border class everywhere but three 10x10 cells: A and B 2 pixels apart, C 14 pixels right of B."""
    label = np.full((20, 60), BORDER, np.uint8)
    label[5:15, 2:12] = CELL  # A
    label[5:15, 14:24] = CELL  # B: a 2-pixel separation from A (columns 12-13)
    label[5:15, 38:48] = CELL  # C: a 14-pixel separation from B (columns 24-37)
    return label


def test_narrow_separations_weigh_more_than_wide_ones():
    label = _three_cells()
    weights = border_weight_map(label, BORDER, w0=10.0, sigma=5.0)
    assert weights.shape == label.shape and weights.dtype == np.float32
    np.testing.assert_array_equal(weights[label == CELL], 1.0)  # w_c = 1, no border term inside cells
    assert weights.min() >= 1.0
    narrow, wide = weights[10, 12], weights[10, 30]
    # in the narrow gap d1 + d2 = 3 (pixel centres 1 and 2 away): 1 + 10 exp(-9 / 50)
    assert narrow == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-5)
    # in the wide one, midway: d1 + d2 = 7 + 8
    assert wide == pytest.approx(1 + 10 * np.exp(-225 / 50), rel=1e-5)
    assert wide < 1.2 < 5 < narrow
    # the far corner is more than 4 sigma from any second cell: no border term
    assert weights[0, 59] == pytest.approx(1.0, abs=1e-3)


def test_keep_class_total_moves_weight_within_the_border_class_only():
    label = _three_cells()
    plain = border_weight_map(label, BORDER)
    kept = border_weight_map(label, BORDER, keep_class_total=True)
    assert kept[label == BORDER].mean() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(kept[label == CELL], 1.0)
    # the order within the border class is the paper's
    border = label == BORDER
    np.testing.assert_allclose(kept[border] / plain[border], kept[border][0] / plain[border][0], rtol=1e-5)


def test_one_object_or_no_border_gives_uniform_weights():
    single = np.full((12, 12), BORDER, np.uint8)
    single[3:9, 3:9] = CELL
    np.testing.assert_array_equal(border_weight_map(single, BORDER), 1.0)
    np.testing.assert_array_equal(border_weight_map(np.zeros((8, 8), np.uint8), BORDER), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        border_weight_map(single, BORDER, sigma=0)


def test_dictionary_version_adds_a_channel_first_map_with_the_labels_meta():
    label = MetaTensor(torch.as_tensor(_three_cells())[None], meta={"filename_or_obj": "section_07.png"})
    out = BorderWeightd(keys="label", border_class=BORDER)({"label": label})
    assert out["label"] is label
    assert out["weight"].shape == (1, 20, 60) and out["weight"].dtype == torch.float32
    assert out["weight"].meta["filename_or_obj"] == "section_07.png"
    with pytest.raises(ValueError, match="one class map"):
        BorderWeightd(keys=["label", "image"], border_class=BORDER)


def test_augmentation_carries_the_weights_as_the_labels_second_channel():
    rng = np.random.default_rng(0)
    aug = microscopy_augmentation(
        (32, 32), num_classes=2, num_samples=2, border_weights={"border_class": BORDER, "w0": 10.0, "sigma": 5.0}
    )
    aug.set_random_state(seed=0)
    label = _three_cells()
    expected = border_weight_map(label, BORDER)
    image = torch.as_tensor(rng.random((1, *label.shape), dtype=np.float32))
    for _ in range(4):
        samples = aug({"image": MetaTensor(image), "label": MetaTensor(torch.as_tensor(label)[None])})
        for s in samples:
            assert "weight" not in s
            assert s["image"].shape == (1, 32, 32) and s["label"].shape == (2, 32, 32)
            assert set(torch.unique(s["label"][0]).tolist()) <= {CELL, BORDER}
            weights = s["label"][1]
            # moved with the image, resampled bilinearly: within the map's range, and 1 on cell pixels
            assert float(weights.min()) >= 1.0 - 1e-4 and float(weights.max()) <= expected.max() + 1e-4
            cells = s["label"][0] == CELL
            # cell pixels 3 or more pixels from a border pixel, inside the patch (it was cut from a larger image)
            interior = torch.nn.functional.max_pool2d((~cells).float()[None], 5, 1, 2)[0] == 0
            inner = weights[2:-2, 2:-2][interior[2:-2, 2:-2]]
            torch.testing.assert_close(inner, torch.ones_like(inner))
