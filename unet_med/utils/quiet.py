"""Dropping known, harmless library messages at the one call that makes them, and nothing else.

Each helper names the exact message it drops, so a new or different warning from the same library still shows.

- :func:`drop_log_records`: records of one logger whose message starts with a given text.
- :func:`monai_readers_quiet`: MONAI's notice, on every ``LoadImage`` built without a reader, that the optional
  GPU DICOM decoder nvImageCodec is not installed (a log record and a ``UserWarning``); DICOM is read without it.
- :data:`ONNX_EXPORT_NOISE`: what ``torch.onnx.export(dynamo=True)`` prints for a network like ours: a warning
  per torchvision operator when torchvision is not installed (a U-Net uses none), and PyTorch's own
  ``LeafSpec`` deprecation (``FutureWarning``) raised inside ``torch.export``.

Example::

    with drop_log_records("monai.bundle.workflows", "Logging file is set to False"):
        ConfigWorkflow(..., logging_file=False)
    with onnx_export_quiet():
        torch.onnx.export(net, (x,), dynamo=True)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["ONNX_EXPORT_NOISE", "drop_log_records", "monai_readers_quiet", "onnx_export_quiet"]

#: (logger, message start) pairs and (FutureWarning message regex) dropped around ONNX export.
ONNX_EXPORT_NOISE = {
    "logs": [("torch.onnx._internal.exporter._registration", "torchvision is not installed")],
    "future_warnings": [r"`isinstance\(treespec, LeafSpec\)` is deprecated"],
}


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextmanager
def drop_log_records(logger: str, prefix: str) -> Iterator[None]:
    """Drops the records of ``logger`` whose message starts with ``prefix`` while the block runs."""
    target = logging.getLogger(logger)
    dropper = _DropPrefix(prefix)
    target.addFilter(dropper)
    try:
        yield
    finally:
        target.removeFilter(dropper)


@contextmanager
def onnx_export_quiet() -> Iterator[None]:
    """Drops :data:`ONNX_EXPORT_NOISE` while the block runs; every other warning and log record still shows."""
    with ExitStack() as stack:
        for logger, prefix in ONNX_EXPORT_NOISE["logs"]:
            stack.enter_context(drop_log_records(logger, prefix))
        stack.enter_context(warnings.catch_warnings())
        for message in ONNX_EXPORT_NOISE["future_warnings"]:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        yield


@contextmanager
def monai_readers_quiet() -> Iterator[None]:
    """Drops MONAI's nvImageCodec-not-available notices while a ``LoadImage`` is built; nothing else."""
    with drop_log_records("monai.data.nvimgcodec_pydicom_plugin", "nvImageCodec is not available"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec", category=UserWarning)
            yield
