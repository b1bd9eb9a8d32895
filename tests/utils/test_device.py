"""The device a run asks for, checked before any work."""

from __future__ import annotations

import pytest
import torch

from unet_med.utils import UsageError, check_device
from unet_med.utils.device import DeviceError


def test_cpu_is_always_there():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_is_one_clear_line(device):
    with pytest.raises(DeviceError, match="no CUDA device is available") as err:
        check_device(device)
    assert isinstance(err.value, UsageError) and "\n" not in str(err.value) and "--device cpu" in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_index_beyond_the_devices_present():
    check_device("cuda:0")
    with pytest.raises(DeviceError, match="numbered from 0"):
        check_device(f"cuda:{torch.cuda.device_count()}")


def test_not_a_device_name():
    with pytest.raises(ValueError, match="not a device name"):
        check_device("gpu")
