"""Fold ensembles: the mean softmax of k networks, run inside ONE sliding-window pass."""

from __future__ import annotations

import copy

import pytest
import torch

from unet_med.inference import inferer as inferer_module
from unet_med.inference.ensemble import FoldEnsemble, load_ensemble, member_files
from unet_med.inference.inferer import ScanInferer
from unet_med.inference.tta import MirrorTTA, SoftmaxNetwork
from unet_med.networks import UNet


def _net(seed: int, dims: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(dims, 1, 3, features=[4, 8, 16, 32], norm=["instance", {"affine": True}]).eval()


@pytest.mark.parametrize("dims", [2, 3])
def test_ensemble_of_identical_models_equals_the_single_model(dims):
    net = _net(0, dims)
    ensemble = FoldEnsemble([net, copy.deepcopy(net), copy.deepcopy(net)]).eval()
    x = torch.randn(1, 1, *([32] * dims))
    inferer = ScanInferer(roi_size=[16] * dims, precision="fp32", tune_malloc=False)
    single = inferer(x, SoftmaxNetwork(net))  # the single model's probabilities, blended the same way
    torch.testing.assert_close(inferer(x, ensemble), single, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x[..., :16, :16] if dims == 2 else x[..., :16, :16, :16]).sum(1),
                                   torch.ones(1, *([16] * dims)))  # fmt: skip


def test_ensemble_runs_one_sliding_window_pass(monkeypatch):
    members = [_net(seed) for seed in range(3)]
    calls = [0, 0, 0]
    for i, m in enumerate(members):
        m.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    passes = []
    original = inferer_module.SlidingWindowInferer.__call__

    def counting(self, *args, **kwargs):
        passes.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(inferer_module.SlidingWindowInferer, "__call__", counting)
    inferer = ScanInferer(roi_size=(16, 16, 16), sw_batch_size=4, precision="fp32", tune_malloc=False)
    scores = inferer(torch.randn(1, 1, 32, 32, 32), FoldEnsemble(members))
    assert len(passes) == 1, "the ensemble must run inside one sliding-window pass"
    windows = 3**3  # 32 with 16^3 windows at overlap 0.5: 3 per axis
    assert calls == [-(-windows // 4)] * 3, "each member runs once per batch of windows"
    assert scores.shape == (1, 3, 32, 32, 32)
    torch.testing.assert_close(scores.sum(1), torch.ones(1, 32, 32, 32), atol=1e-4, rtol=1e-4)


def test_mirroring_an_ensemble_does_not_apply_softmax_twice():
    ensemble = FoldEnsemble([_net(0), _net(1)]).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(MirrorTTA(ensemble, axes=())(x), ensemble(x))


def test_load_ensemble_reads_the_members_beside_model_pt(tmp_path):
    nets = [_net(seed) for seed in range(3)]
    files = member_files(tmp_path / "model.pt", 3)
    assert [f.name for f in files] == ["model.pt", "model_fold1.pt", "model_fold2.pt"]
    for net, f in zip(nets, files):
        torch.save(net.state_dict(), f)
    single = load_ensemble(_net(9), tmp_path / "model.pt", members=1)
    assert not isinstance(single, FoldEnsemble)
    ensemble = load_ensemble(_net(9), tmp_path / "model.pt", members=3)
    assert isinstance(ensemble, FoldEnsemble) and len(ensemble.networks) == 3
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        expected = sum(torch.softmax(n(x), 1) for n in nets) / 3
        torch.testing.assert_close(ensemble(x), expected)
    with pytest.raises(FileNotFoundError):
        load_ensemble(_net(9), tmp_path / "model.pt", members=4)
