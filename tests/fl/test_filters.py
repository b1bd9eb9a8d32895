"""The Gaussian-noise privacy filter (needs the ``fl`` extra)."""

from __future__ import annotations

import numpy as np
import pytest


def test_clip_and_noise_clips_the_whole_update(flare):
    from unet_med.fl.filters import clip_and_noise

    rng = np.random.default_rng(0)
    update = {"a": np.full((10, 10), 1.0, dtype=np.float32), "b": np.full(5, -2.0, dtype=np.float32)}
    clipped, norm = clip_and_noise(update, sigma=0.0, clip=1.0, rng=rng)
    assert norm == pytest.approx(np.sqrt(100 + 20))
    assert np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in clipped.values())) == pytest.approx(1.0)
    assert all(clipped[k].dtype == np.float32 and clipped[k].shape == update[k].shape for k in update)
    small = {"a": np.full(4, 0.1, dtype=np.float32)}
    kept, _ = clip_and_noise(small, sigma=0.0, clip=1.0, rng=rng)
    np.testing.assert_array_equal(kept["a"], small["a"])  # under the bound: unchanged


def test_noise_has_the_asked_spread(flare):
    from unet_med.fl.filters import clip_and_noise

    zero = {"w": np.zeros(200_000, dtype=np.float32)}
    noisy, _ = clip_and_noise(zero, sigma=0.5, clip=2.0, rng=np.random.default_rng(1))
    assert float(np.std(noisy["w"])) == pytest.approx(1.0, rel=0.02)
    assert abs(float(np.mean(noisy["w"]))) < 0.01


def test_filter_touches_weight_differences_only(flare):
    from nvflare.apis.dxo import DXO, DataKind, from_shareable
    from nvflare.apis.fl_context import FLContext

    from unet_med.fl.filters import GaussianNoise

    weights = {"w": np.ones(8, dtype=np.float32)}
    noise = GaussianNoise(sigma=1.0, clip=1.0, seed=0)
    kept = from_shareable(noise.process(DXO(DataKind.WEIGHTS, dict(weights)).to_shareable(), FLContext()))
    np.testing.assert_array_equal(kept.data["w"], weights["w"])
    changed = from_shareable(noise.process(DXO(DataKind.WEIGHT_DIFF, dict(weights)).to_shareable(), FLContext()))
    assert not np.array_equal(changed.data["w"], weights["w"])


@pytest.mark.parametrize(("sigma", "clip"), [(-1.0, 1.0), (1.0, 0.0)])
def test_filter_refuses_bad_settings(flare, sigma: float, clip: float):
    from unet_med.fl.filters import GaussianNoise

    with pytest.raises(ValueError):
        GaussianNoise(sigma=sigma, clip=clip)
