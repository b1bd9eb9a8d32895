"""Mixed precision around MONAI inferers, and atomic NIfTI writing."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.transforms import SaveImage

from unet_med.inference import AtomicNibabelWriter, AutocastInferer
from unet_med.networks import UNet


def test_bf16_agrees_with_fp32_on_a_small_volume():
    torch.manual_seed(0)
    net = UNet(3, 1, 3, features=(8, 16, 32), norm="instance").eval()
    x = torch.rand(1, 1, 40, 40, 24)
    window = SlidingWindowInferer(roi_size=(32, 32, 16), overlap=0.5, mode="gaussian")
    with torch.inference_mode():
        fp32 = AutocastInferer(window, enabled=False)(x, net)
        bf16 = AutocastInferer(window, enabled=True)(x, net)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    agreement = (bf16.argmax(1) == fp32.argmax(1)).float().mean().item()
    assert agreement > 0.98, agreement


def test_disabled_is_a_pass_through():
    net = torch.nn.Conv3d(1, 2, 1)
    x = torch.rand(1, 1, 4, 4, 4)
    torch.testing.assert_close(AutocastInferer(SimpleInferer(), enabled=False)(x, net), net(x))


def test_atomic_writer_leaves_only_the_mask(tmp_path):
    affine = np.diag([-0.8, -0.8, 3.0, 1.0])
    mask = MetaTensor(torch.ones(1, 6, 5, 4), affine=torch.as_tensor(affine), meta={"filename_or_obj": "scan.nii.gz"})
    SaveImage(
        output_dir=tmp_path,
        output_postfix="seg",
        separate_folder=False,
        writer=AtomicNibabelWriter,
        output_dtype=np.uint8,
        print_log=False,
        resample=False,
    )(mask)
    assert os.listdir(tmp_path) == ["scan_seg.nii.gz"]
    saved = nib.load(tmp_path / "scan_seg.nii.gz")
    assert saved.shape == (6, 5, 4)
    np.testing.assert_allclose(saved.affine, affine)
