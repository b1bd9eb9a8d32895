"""Atomic file output."""

from __future__ import annotations

import json
import os
import stat

import pytest

from unet_med.utils import atomic_path, atomic_write_json


def test_atomic_path_renames_on_success_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "mask.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".nii.gz") and tmp != target
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(target.parent) == ["mask.nii.gz"]


def test_atomic_path_keeps_old_file_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_atomic_write_json(tmp_path):
    path = atomic_write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}


def test_atomic_save_dicom_writes_a_readable_file_and_leaves_no_temporary(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from unet_med.utils.io import atomic_save_dicom

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.66.4", generate_uid(), "SEG"
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = atomic_save_dicom(ds, tmp_path / "x_seg.dcm")
    assert out == tmp_path / "x_seg.dcm" and [p.name for p in tmp_path.iterdir()] == ["x_seg.dcm"]
    assert pydicom.dcmread(out).SOPInstanceUID == ds.SOPInstanceUID
