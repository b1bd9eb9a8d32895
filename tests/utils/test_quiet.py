"""Known library notices are dropped at the call that makes them, and only they: a neighbour still shows."""

from __future__ import annotations

import logging
import warnings

import pytest

from unet_med.utils.quiet import drop_log_records, monai_readers_quiet, onnx_export_quiet


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _collect(name: str) -> _Collect:
    handler = _Collect()
    logging.getLogger(name).addHandler(handler)
    return handler


def test_drop_log_records_drops_only_the_named_message_while_the_block_runs():
    handler = _collect("unet_med.test.quiet")
    log = logging.getLogger("unet_med.test.quiet")
    with drop_log_records("unet_med.test.quiet", "known notice"):
        log.warning("known notice: harmless")
        log.warning("something else")
    log.warning("known notice: after the block")
    assert handler.messages == ["something else", "known notice: after the block"]


def test_onnx_export_quiet_drops_the_two_known_notices_only():
    handler = _collect("torch.onnx._internal.exporter._registration")
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with onnx_export_quiet():
            log.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            log.warning("a different problem")
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
            warnings.warn("another deprecation", FutureWarning, stacklevel=1)
    assert handler.messages == ["a different problem"]
    assert [str(w.message) for w in caught] == ["another deprecation"]


def test_building_a_loader_says_nothing_about_the_missing_gpu_dicom_decoder():
    from monai.data.nvimgcodec_pydicom_plugin import is_nvimgcodec_available
    from monai.transforms import LoadImage

    if is_nvimgcodec_available():
        pytest.skip("nvImageCodec is installed: MONAI has no notice to give")
    handler = _collect("monai.data.nvimgcodec_pydicom_plugin")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LoadImage(image_only=True)
        assert caught and handler.messages, "MONAI no longer gives the notice: drop monai_readers_quiet"
        caught.clear()
        handler.messages.clear()
        with monai_readers_quiet():
            LoadImage(image_only=True)
    assert not [w for w in caught if "nvImageCodec" in str(w.message)] and handler.messages == []
