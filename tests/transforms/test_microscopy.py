"""Tests for unet_med.transforms.microscopy: boundary classes from instances and back, and the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from unet_med.transforms import (
    ClassesToInstancesd,
    InstancesToClassesd,
    classes_to_instances,
    instances_to_classes,
    microscopy_augmentation,
)


def _touching() -> np.ndarray:
    """Two 6x6 squares side by side (touching) and a 4x4 square apart."""
    labels = np.zeros((16, 20), np.int64)
    labels[2:8, 2:8] = 1
    labels[2:8, 8:14] = 2
    labels[11:15, 15:19] = 3
    return labels


def test_instances_to_classes_marks_each_objects_rim():
    classes = instances_to_classes(_touching())
    assert classes.dtype == np.uint8
    assert classes[0, 0] == 0
    # rims: first and last row/column of each square, so the touching columns 7 and 8 are both boundary
    assert (classes[2, 2:14] == 2).all() and (classes[2:8, 7] == 2).all() and (classes[2:8, 8] == 2).all()
    np.testing.assert_array_equal(classes[3:7, 3:7], 1)
    np.testing.assert_array_equal(classes[12:14, 16:18], 1)  # the 4x4 square keeps a 2x2 interior
    assert int((classes == 1).sum()) == 4 * 4 * 2 + 2 * 2


def test_classes_to_instances_separates_touching_objects():
    truth = _touching()
    classes = instances_to_classes(truth)
    probs = np.stack([(classes == k).astype(np.float32) for k in range(3)])
    found = classes_to_instances(probs, min_size=4)
    assert found.dtype == np.int32
    assert found.max() == 3
    for k in (1, 2, 3):  # each true object is exactly one predicted object, boundary pixels included
        values = np.unique(found[truth == k])
        assert len(values) == 1 and values[0] > 0
    np.testing.assert_array_equal(found > 0, truth > 0)


def test_classes_to_instances_keeps_seedless_blobs_and_drops_specks():
    probs = np.zeros((3, 12, 12), np.float32)
    probs[0] = 1.0
    probs[:, 2:6, 2:6] = [[[0.0]], [[0.1]], [[0.9]]]  # foreground without interior: an object of its own
    probs[:, 9, 9] = [0.0, 1.0, 0.0]  # one pixel: dropped
    found = classes_to_instances(probs, min_size=4)
    assert found.max() == 1 and (found[2:6, 2:6] == 1).all() and found[9, 9] == 0
    with pytest.raises(ValueError, match="background, interior, boundary"):
        classes_to_instances(np.zeros((2, 4, 4)))


def test_dictionary_versions_keep_metadata():
    label = MetaTensor(torch.as_tensor(_touching())[None], meta={"filename_or_obj": "a.png"})
    out = InstancesToClassesd(keys="label")({"label": label})["label"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.png" and out.shape == (1, 16, 20)
    probs = torch.nn.functional.one_hot(out[0].long(), 3).permute(2, 0, 1).float()
    inst = ClassesToInstancesd(keys="pred", min_size=4)({"pred": probs})["pred"]
    assert inst.shape == (1, 16, 20) and int(inst.max()) == 3


def test_augmentation_keeps_patch_size_and_label_values():
    rng = np.random.default_rng(0)
    aug = microscopy_augmentation((32, 32), num_classes=3, num_samples=2)
    aug.set_random_state(seed=0)
    label = torch.as_tensor(instances_to_classes(_touching()))[None]
    image = torch.as_tensor(rng.random((1, 16, 20), dtype=np.float32))
    for _ in range(5):
        samples = aug({"image": MetaTensor(image), "label": MetaTensor(label)})
        assert len(samples) == 2
        for s in samples:
            assert s["image"].shape == (1, 32, 32) and s["label"].shape == (1, 32, 32)
            assert set(torch.unique(s["label"]).tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="2D"):
        microscopy_augmentation((32, 32, 8), num_classes=2)


def test_wider_boundary_stays_inside_the_objects():
    truth = _touching()
    classes = instances_to_classes(truth, boundary_width=2)
    np.testing.assert_array_equal(classes > 0, truth > 0)  # never grows into the background
    assert (classes[2:8, 6:10] == 2).all()  # two rim pixels on each side of the contact
    np.testing.assert_array_equal(classes[4:6, 4:6], 1)
    assert int((classes == 1).sum()) == 2 * 2 * 2  # the 4x4 square is all rim
