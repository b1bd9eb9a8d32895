"""Preprocessing presets and their inversion back to the input geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from unet_med.transforms import inference_postprocessing, preprocessing, strong_augmentation, train_augmentation


def _lps_volume(path, shape=(20, 18, 7), zooms=(0.8, 0.9, 3.0)):
    affine = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])
    affine[:3, 3] = [10.0, 20.0, -5.0]
    data = np.random.default_rng(0).normal(50, 10, size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), path)
    return affine


def test_preprocessing_then_inversion_restores_geometry(tmp_path):
    affine = _lps_volume(tmp_path / "scan.nii.gz")
    pre = preprocessing(keys=["image"], modality="mri", pixdim=(1.5, 1.5, 1.5))
    sample = pre({"image": str(tmp_path / "scan.nii.gz")})
    image = sample["image"]
    assert tuple(image.shape[1:]) != (20, 18, 7)  # resampled and reoriented
    assert abs(float(image.mean())) < 0.1 and abs(float(image.std()) - 1) < 0.1
    logits = torch.randn(1, 3, *image.shape[1:])
    sample["pred"] = MetaTensor(logits[0], affine=image.affine, meta=image.meta)
    sample["pred"].applied_operations = image.applied_operations
    post = inference_postprocessing(pre)
    out = post(sample)
    pred = out["pred"]
    assert tuple(pred.shape) == (1, 20, 18, 7)
    np.testing.assert_allclose(np.asarray(pred.affine), affine, atol=1e-4)
    assert set(torch.unique(pred).tolist()) <= {0, 1, 2}


def test_ct_window_scales_to_unit_range(tmp_path):
    data = np.linspace(-2000, 2000, 8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "ct.nii.gz")
    image = preprocessing(keys=["image"], modality="ct", ct_window=(-100, 300))({"image": str(tmp_path / "ct.nii.gz")})[
        "image"
    ]
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="modality"):
        preprocessing(modality="pet")
    with pytest.raises(ValueError, match="image_key"):
        preprocessing(keys=["label"])
    with pytest.raises(ValueError, match="mri_foreground"):
        preprocessing(mri_foreground="brain")


def test_mri_foreground_above_min_ignores_a_constant_negative_background(tmp_path):
    data = np.full((12, 12, 6), -3.0, np.float32)
    data[3:9, 3:9, 1:5] = np.linspace(10, 50, 144, dtype=np.float32).reshape(6, 6, 4)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "brain.nii.gz")
    load = {"image": str(tmp_path / "brain.nii.gz")}
    above = preprocessing(keys=["image"], mri_foreground="above_min")(load)["image"][0]
    nonzero = preprocessing(keys=["image"], mri_foreground="nonzero")(load)["image"][0]
    assert float(above[0, 0, 0]) == 0.0 and abs(float(above[3:9, 3:9, 1:5].mean())) < 1e-5
    assert float(nonzero[0, 0, 0]) != 0.0  # MONAI's nonzero mask counts the -3 background


def test_train_augmentation_samples_patches_of_patch_size():
    aug = train_augmentation(patch_size=(16, 16, 8), num_classes=3, num_samples=3)
    image = torch.rand(1, 20, 20, 10)
    label = torch.zeros(1, 20, 20, 10, dtype=torch.uint8)
    label[0, 5:10, 5:10, 2:5] = 1
    label[0, 12:15, 12:15, 5:8] = 2
    samples = aug({"image": image, "label": label})
    assert len(samples) == 3
    assert all(tuple(s["image"].shape) == (1, 16, 16, 8) for s in samples)


def test_non_square_patches_keep_their_shape():
    aug = train_augmentation(patch_size=(8, 12, 8), num_classes=2, num_samples=4)
    label = torch.zeros(1, 16, 16, 10, dtype=torch.uint8)
    label[0, 4:9, 4:9, 3:6] = 1
    for _ in range(5):
        samples = aug({"image": torch.rand(1, 16, 16, 10), "label": label})
        assert all(tuple(s["image"].shape) == (1, 8, 12, 8) for s in samples)


@pytest.mark.parametrize("patch", [(24, 24, 8), (16, 16, 16), (32, 24)])
def test_strong_augmentation_keeps_patch_size_and_label_values(patch):
    from monai.utils import set_determinism

    set_determinism(0)
    shape = tuple(2 * p for p in patch)
    label = torch.zeros(1, *shape, dtype=torch.uint8)
    label[(0, *[slice(s // 3, s // 2) for s in shape])] = 1
    label[(0, *[slice(s // 2, 2 * s // 3) for s in shape])] = 2
    aug = strong_augmentation(patch, num_classes=3, num_samples=4)
    try:
        for _ in range(3):
            for s in aug({"image": torch.rand(1, *shape), "label": label.clone()}):
                assert tuple(s["image"].shape) == (1, *patch) and tuple(s["label"].shape) == (1, *patch)
                assert set(torch.unique(s["label"]).tolist()) <= {0, 1, 2}  # nearest: no blended labels
    finally:
        set_determinism(None)


def test_strong_augmentation_rotates_in_plane_for_thick_slices_and_draws_a_third_on_foreground():
    thin, iso = strong_augmentation((96, 96, 28), 2), strong_augmentation((64, 64, 64), 2)
    assert thin.transforms[2].rand_affine.rand_affine_grid.rotate_range[:2] == (0.0, 0.0)
    assert all(r > 0 for r in iso.transforms[2].rand_affine.rand_affine_grid.rotate_range)
    assert strong_augmentation((16, 16), 5).transforms[1].cropper.ratios == pytest.approx([8.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="foreground_fraction"):
        strong_augmentation((16, 16), 2, foreground_fraction=0.0)


def test_nrrd_input_is_read_in_the_same_geometry_as_nifti(tmp_path):
    import SimpleITK as sitk

    affine = _lps_volume(tmp_path / "scan.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "scan.nii.gz")), str(tmp_path / "scan.nrrd"))
    pre = preprocessing(keys=["image"], modality="none", orientation=None)
    from_nifti = pre({"image": str(tmp_path / "scan.nii.gz")})["image"]
    from_nrrd = pre({"image": str(tmp_path / "scan.nrrd")})["image"]
    assert from_nrrd.shape == from_nifti.shape
    np.testing.assert_allclose(np.asarray(from_nrrd.affine), affine, atol=1e-4)
    torch.testing.assert_close(from_nrrd.as_tensor(), from_nifti.as_tensor())


def test_keep_largest_component_drops_distant_islands():
    logits = torch.zeros(2, 16, 16, 8)
    logits[1, 2:8, 2:8, 2:6] = 5.0  # the tumour
    logits[1, 13:15, 13:15, 6:7] = 5.0  # a distant false positive
    post = inference_postprocessing(preprocessing(keys=["image"]), invert=False, keep_largest=[1])
    mask = post({"pred": logits})["pred"]
    assert int(mask.sum()) == 6 * 6 * 4 and float(mask[0, 14, 14, 6]) == 0.0


def test_load_like_preprocessing_reads_a_picture_in_monai_axis_order(tmp_path):
    from PIL import Image

    from unet_med.transforms import load_like_preprocessing

    picture = np.zeros((6, 10), dtype=np.uint8)  # 6 rows, 10 columns
    picture[1, 7] = 255
    Image.fromarray(picture).save(tmp_path / "label.png")
    array, affine = load_like_preprocessing(tmp_path / "label.png")
    assert array.shape == (10, 6) and array[7, 1] == 255  # (columns, rows), as preprocessing's LoadImaged gives
    assert affine.shape[0] >= 3
