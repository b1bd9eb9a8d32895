"""Reading scans within bounds: the header is checked before any voxel is read, lying headers are refused, and a
gzip stream is never inflated past what the header promises."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from tests.hostile import lying_nifti, promising_nifti_gz, small_nifti_over_a_bomb
from unet_med.data.readers import ImageReadError, ScanTooLarge, read_array, read_header
from unet_med.inference.cases import case_header


def test_a_header_promising_8_gb_is_refused_before_reading(tmp_path):
    bomb = promising_nifti_gz(tmp_path / "bomb.nii.gz", (2048, 2048, 512))  # the 8 GiB of zeros are there
    assert bomb.stat().st_size < 10 << 20
    assert read_header(bomb).shape == (2048, 2048, 512)  # the header alone is fine
    start = time.perf_counter()
    with pytest.raises(ScanTooLarge, match=r"bomb\.nii\.gz: the header promises 2048x2048x512 = 2,147,483,648 voxels"):
        read_array(bomb)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ScanTooLarge):
        case_header(bomb)


def test_the_voxel_limit_is_configurable_and_counts_channels(tmp_path):
    path = tmp_path / "small.nii.gz"
    promising_nifti_gz(path, (10, 10, 10, 2), dtype="uint8")
    assert read_array(path, max_voxels=2000)[0].shape == (10, 10, 10, 2)
    with pytest.raises(ScanTooLarge, match="10x10x10 x 2 channels = 2,000 voxels, more than the limit of 1,999"):
        read_array(path, max_voxels=1999)
    assert read_array(path, max_voxels=None)[0].shape == (10, 10, 10, 2)
    assert case_header(path, max_voxels=2000).channels == 2


@pytest.mark.parametrize(
    ("name", "shape", "holds"),
    [
        ("short.nii", (256, 256, 256), 1 << 20),  # uncompressed: 64 MiB promised, 1 MiB there
        ("short.nii.gz", (512, 512, 512), 100_000),  # compressed: more than deflate's 1032:1 can give
        ("header_only.nii.gz", (2048, 2048, 512), 0),
    ],
)
def test_a_header_that_promises_more_than_the_file_holds_is_an_error(tmp_path, name, shape, holds):
    path = lying_nifti(tmp_path / name, shape, holds_bytes=holds)
    for read in (read_header, read_array, case_header):
        with pytest.raises(ImageReadError, match=f"{name}: the header promises .* bytes of data; .*a lying header"):
            read(path)


def test_a_short_stream_within_the_ratio_is_still_a_one_line_error(tmp_path):
    path = lying_nifti(tmp_path / "short.nii.gz", (64, 64, 64), holds_bytes=500_000)  # 1 MiB promised
    read_header(path)
    with pytest.raises(ImageReadError, match=r"short\.nii\.gz: unreadable or truncated file") as info:
        read_array(path)
    assert "\n" not in str(info.value)


def test_a_nrrd_header_that_lies_is_refused(tmp_path):
    path = tmp_path / "liar.nrrd"
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 1024 1024 1024\nendian: little\nencoding: raw\n\n"
    path.write_bytes(header + b"\0" * 64)
    with pytest.raises(ImageReadError, match=r"liar\.nrrd: the header promises 2,147,483,648 bytes"):
        read_header(path)
    good = tmp_path / "good.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 20, 10), np.int16)), str(good), useCompression=True)
    assert read_header(good).shape == (10, 20, 30)


def test_a_dicom_series_header_counts_its_files(tmp_path):
    from tests.data.test_sitk_reader import write_dicom_series

    image = sitk.GetImageFromArray(np.zeros((5, 12, 10), np.int16))
    image.SetSpacing((0.8, 0.8, 2.5))
    series = tmp_path / "series"
    write_dicom_series(image, series)
    info = case_header(series)
    assert info.shape == (10, 12, 5) and info.spacing == pytest.approx((0.8, 0.8, 2.5))
    with pytest.raises(ScanTooLarge, match="10x12x5 = 600 voxels"):
        case_header(series, max_voxels=599)


# Runs in a child under a 1 GiB address-space limit: had the reader inflated the stream, it fails there, not here.
_CAPPED = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from unet_med.data.readers import read_array
start = time.perf_counter()
data, _ = read_array(sys.argv[1])
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))  # not ru_maxrss:
print(data.shape, int(data.sum()), time.perf_counter() - start, peak_kb)  # that carries the parent's peak over exec
"""


def test_a_gzip_stream_is_read_only_as_far_as_the_header_promises(tmp_path):
    """A valid 32^3 scan followed by 8 GiB of zeros in the same gzip stream reads in milliseconds."""
    path = small_nifti_over_a_bomb(tmp_path / "trailing.nii.gz", (32, 32, 32), trailing_bytes=8 << 30)
    proc = subprocess.run([sys.executable, "-c", _CAPPED, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    shape, total, seconds, rss_kb = proc.stdout.rsplit(")", 1)[0] + ")", *proc.stdout.rsplit(")", 1)[1].split()
    assert shape == "(32, 32, 32" + ")" and int(total) == 32**3
    assert float(seconds) < 10 and int(rss_kb) < 1 << 20
