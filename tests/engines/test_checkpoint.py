"""Weights-only loading and the atomic, resumable checkpoint handlers."""

from __future__ import annotations

import pickle

import pytest
import torch

from unet_med.engines import halve_weights, load_network, load_state_dict
from unet_med.networks import UNet


def test_pickle_payload_is_refused_and_nothing_runs(tmp_path):
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f)
    with pytest.raises(ValueError, match="not a weights-only checkpoint"):
        load_state_dict(path)
    assert not canary.exists()


def test_truncated_and_missing_files(tmp_path):
    net = UNet(3, 1, 2, features=(4, 8))
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.pt"):
        load_state_dict(path)
    with pytest.raises(FileNotFoundError, match=r"absent\.pt"):
        load_state_dict(tmp_path / "absent.pt")


def test_load_network_accepts_state_dict_or_checkpoint_and_rejects_mismatch(tmp_path):
    net = UNet(3, 1, 2, features=(4, 8))
    torch.save(net.state_dict(), tmp_path / "a.pt")
    torch.save({"model": net.state_dict(), "epoch": torch.tensor(3)}, tmp_path / "b.pt")
    for name in ("a.pt", "b.pt"):
        loaded = load_network(UNet(3, 1, 2, features=(4, 8)), tmp_path / name)
        assert not loaded.training
        torch.testing.assert_close(loaded.head.weight, net.head.weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_network(UNet(3, 1, 3, features=(4, 8)), tmp_path / "a.pt")


def test_halve_weights_halves_the_file_and_loads_into_float32(tmp_path):
    torch.manual_seed(0)
    net = UNet(2, 1, 2, features=(16, 32, 64))
    full = tmp_path / "model.pt"
    torch.save(net.state_dict(), full)
    half = halve_weights(full, tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert all(v.dtype == torch.float16 for v in load_state_dict(half).values() if v.is_floating_point())
    loaded = load_network(UNet(2, 1, 2, features=(16, 32, 64)), half, "cpu")
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x), atol=2e-2, rtol=2e-2)
    torch.save({"w": torch.tensor([1e6])}, tmp_path / "big.pt")
    with pytest.raises(ValueError, match="float16 range"):
        halve_weights(tmp_path / "big.pt")
