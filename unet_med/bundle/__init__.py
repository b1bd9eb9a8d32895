"""Bundle tooling: locating a bundle, the static safety scan, verifying, exporting, packing and unpacking it."""

from __future__ import annotations

from unet_med.bundle.export import export_onnx, export_torchscript
from unet_med.bundle.manifest import BundleError, check_manifest
from unet_med.bundle.pack import pack_bundle, unpack_bundle
from unet_med.bundle.paths import locate_bundle_root
from unet_med.bundle.scan import Finding, scan_bundle
from unet_med.bundle.verify import VerifyReport, verify_bundle

__all__ = [
    "BundleError",
    "Finding",
    "VerifyReport",
    "check_manifest",
    "export_onnx",
    "export_torchscript",
    "locate_bundle_root",
    "pack_bundle",
    "scan_bundle",
    "unpack_bundle",
    "verify_bundle",
]
