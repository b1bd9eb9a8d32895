"""The unet-med command line."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from unet_med.cli import main


def test_demo_data_then_check_data(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo-data", "--out", str(out), "--dims", "2", "--num-cases", "1"]) == 0
    assert (out / "imagesTr" / "case_000.png").is_file()
    assert str(out) in capsys.readouterr().out


def test_check_data_lists_bad_files_and_fails(tmp_path, capsys):
    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), affine), tmp_path / "imagesTr" / "a.nii.gz")
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 9, np.uint8), affine), tmp_path / "labelsTr" / "a.nii.gz")
    assert main(["check-data", str(tmp_path), "--num-classes", "3"]) == 1
    err = capsys.readouterr().err
    assert "a.nii.gz" in err and "9" in err
