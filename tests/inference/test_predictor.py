"""Predictor internals: bundle loading, bf16 vs fp32 agreement, float16 stitching, mirroring TTA, argmax."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from unet_med.data import synthetic_volume
from unet_med.inference import BundleError, MirrorTTA, Predictor, argmax_uint8, load_bundle, runtime
from unet_med.inference.runtime import choose_precision, cpu_supports_bf16, glibc_malloc_kept, uses_instance_norm

UNET = Path(__file__).resolve().parents[2] / "bundles" / "unet"


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    total = x.sum() + y.sum()
    return 1.0 if total == 0 else float(2 * (x & y).sum() / total)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A synthetic MRI-like volume like the reference bundle was trained on, preprocessed by the bundle."""
    tmp = tmp_path_factory.mktemp("predictor")
    image, label = synthetic_volume((64, 64, 40), num_classes=3, seed=7)
    nib.save(nib.Nifti1Image(image, np.diag([1.2, 1.2, 2.5, 1.0])), tmp / "case.nii.gz")
    return tmp / "case.nii.gz", label


def masks(case, **kwargs) -> np.ndarray:
    predictor = Predictor(load_bundle(UNET), **kwargs)
    data = predictor._load(case)
    return argmax_uint8(predictor.infer(data["image"])).numpy()


def test_bundle_settings_come_from_the_configs():
    model = load_bundle(UNET)
    assert (model.spatial_dims, model.in_channels, model.num_classes) == (3, 1, 3)
    assert model.patch_size == (48, 48, 32) and model.class_names == ["background", "organ", "lesion"]
    assert not model.network.training and uses_instance_norm(model.network)


def test_bad_bundle_folders(tmp_path):
    with pytest.raises(BundleError, match="no configs"):
        load_bundle(tmp_path)
    (tmp_path / "configs").mkdir()
    with pytest.raises(BundleError, match=r"configs/task\.json: missing"):  # not made by the template: refused
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match=r"metadata\.json: missing"):
        load_bundle(tmp_path, trust_bundle_code=True)


def test_bf16_masks_agree_with_fp32(case):
    path, label = case
    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    fp32, bf16 = masks(path, precision="fp32"), masks(path, precision="bf16")
    for c in (1, 2):
        assert dice(fp32, bf16, c) >= 0.99, c
        assert dice(fp32, label, c) > 0.8  # the network does segment this volume, so agreement means something


def test_float16_stitching_agrees_with_float32(case):
    path, _ = case
    full, half = masks(path, precision="fp32"), masks(path, precision="fp32", stitch_budget_bytes=0)
    assert (full == half).mean() > 0.999


def test_slab_resampling_matches_invertd(tmp_path):
    """The memory-bounded inverse for large scans gives what MONAI's Invertd gives, on an oblique, resampled case."""
    # spacings chosen so no target voxel centre falls exactly half-way between two source voxels (ties round
    # either way depending on float precision)
    affine = np.array([[0.0, -1.07, 0.0, 40.0], [-0.93, 0.0, 0.0, 30.0], [0.0, 0.0, 2.3, -15.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(synthetic_volume((50, 40, 24), seed=3)[0], affine), tmp_path / "c.nii.gz")
    model = load_bundle(UNET)
    outputs = {}
    for limit in (1 << 40, 0):  # Invertd, then the slab path
        predictor = Predictor(model, invert_voxel_limit=limit, save_probabilities=True)
        result = predictor.predict_case(tmp_path / "c.nii.gz", tmp_path / str(limit))
        assert result.ok, result.error
        outputs[limit] = [nib.load(p) for p in result.outputs]
    (mask_a, prob_a), (mask_b, prob_b) = outputs.values()
    np.testing.assert_array_equal(np.asarray(mask_a.dataobj), np.asarray(mask_b.dataobj))
    np.testing.assert_allclose(mask_a.affine, mask_b.affine, atol=1e-6)
    np.testing.assert_allclose(prob_a.get_fdata(), prob_b.get_fdata(), atol=1e-4)


def test_glibc_malloc_kept_runs_a_block():
    with glibc_malloc_kept() as applied:
        torch.zeros(1 << 20).sum()
    assert isinstance(applied, bool)


@pytest.fixture
def libc_calls(monkeypatch):
    """The calls that would reach glibc's mallopt and malloc_trim, recorded instead."""
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))

        def malloc_trim(self, pad):
            calls.append(("trim", pad))

    monkeypatch.setattr(runtime, "_libc", lambda: FakeLibc())
    return calls


def test_glibc_malloc_kept_nested_blocks_leave_it_to_the_outermost(libc_calls):
    calls = libc_calls
    with glibc_malloc_kept(release=False) as outer:
        set_up = list(calls)
        with glibc_malloc_kept() as inner:  # a per-case block inside a whole-run one: no change, no trim
            pass
        assert calls == set_up
    assert outer and inner
    assert [c[0] for c in set_up] == ["mallopt", "mallopt"]
    assert [c[0] for c in calls[2:]] == ["mallopt", "mallopt"]  # defaults back, and no trim with release=False
    calls.clear()
    with pytest.raises(RuntimeError), glibc_malloc_kept():
        raise RuntimeError("a failed case")
    assert [c[0] for c in calls] == ["mallopt", "mallopt", "mallopt", "mallopt", "trim"]
    assert runtime._kept_depth == 0


def test_mirror_tta_averages_flipped_softmax():
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, 8, 6, 4)
    tta = MirrorTTA(net, axes=(0, 2))
    expected = torch.zeros(2, 3, 8, 6, 4)
    for dims in ((), (2,), (4,), (2, 4)):
        xi = torch.flip(x, dims) if dims else x
        p = torch.softmax(net(xi), 1)
        expected += torch.flip(p, dims) if dims else p
    with torch.no_grad():
        torch.testing.assert_close(tta(x), expected / 4)
    assert len(MirrorTTA(net).flips) == 8 and len(MirrorTTA(net, spatial_dims=2).flips) == 4
    with pytest.raises(ValueError, match="mirror axes"):
        MirrorTTA(net, axes=(3,))


def test_argmax_uint8_matches_torch():
    scores = torch.randn(4, 37, 5, 3)
    out = argmax_uint8(scores, slab=8)
    assert out.dtype == torch.uint8
    torch.testing.assert_close(out.long(), scores.argmax(0))
    # ties go to the first maximum and NaN counts as the maximum, as in torch.argmax; bf16 scores too
    scores = torch.randint(0, 3, (5, 17, 4, 3)).float()
    scores[2, 3, 1, 1] = scores[4, 5, 2, 0] = scores[1, 5, 2, 0] = float("nan")
    torch.testing.assert_close(argmax_uint8(scores, slab=4).long(), scores.argmax(0))
    torch.testing.assert_close(argmax_uint8(scores.bfloat16()).long(), scores.bfloat16().argmax(0))


def test_precision_choice():
    cpu = torch.device("cpu")
    assert choose_precision("fp32", cpu) == torch.float32
    assert choose_precision("auto", cpu) == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)
    with pytest.raises(ValueError, match="precision"):
        choose_precision("int8", cpu)


def test_mirrored_wraps_only_when_asked():
    from unet_med.inference import MirrorTTA, mirrored

    net = torch.nn.Conv2d(1, 2, 1)
    assert mirrored(net, False, 2) is net
    wrapped = mirrored(net, True, 2)
    assert isinstance(wrapped, MirrorTTA) and wrapped.network is net
    torch.testing.assert_close(wrapped(torch.rand(1, 1, 4, 4)).sum(1), torch.ones(1, 4, 4))


def test_glibc_malloc_default_and_mapped_pause_a_kept_block(libc_calls):
    calls = libc_calls
    with runtime.glibc_malloc_default(), runtime.glibc_malloc_mapped():
        pass
    assert calls == []  # outside a kept block both are no-ops
    with glibc_malloc_kept(release=False):
        calls.clear()
        with runtime.glibc_malloc_mapped():  # mapping back on, nothing handed back
            assert calls == [("mallopt", runtime._M_MMAP_MAX, runtime._DEFAULT_MMAP_MAX)]
        calls.clear()
        with runtime.glibc_malloc_default():
            assert ("trim", 0) in calls and runtime._kept_depth == 0
            calls.clear()
            with glibc_malloc_kept():  # acts as an outermost block: gives its buffers back at the end
                pass
            assert calls[-1] == ("trim", 0)
        assert runtime._kept_depth == 1
    assert runtime._kept_depth == 0
