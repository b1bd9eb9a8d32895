"""Bundle tooling: locating a bundle, the static safety scan, signing, verifying, exporting, packing and unpacking."""

from __future__ import annotations

from unet_med.bundle.export import export_onnx, export_torchscript
from unet_med.bundle.manifest import BundleError, check_manifest
from unet_med.bundle.pack import pack_bundle, unpack_bundle
from unet_med.bundle.paths import locate_bundle_root
from unet_med.bundle.scan import Finding, scan_bundle
from unet_med.bundle.signing import SignatureReport, generate_key, require_signature, sign_bundle, verify_signature
from unet_med.bundle.verify import VerifyReport, verify_bundle

__all__ = [
    "BundleError",
    "Finding",
    "SignatureReport",
    "VerifyReport",
    "check_manifest",
    "export_onnx",
    "export_torchscript",
    "generate_key",
    "locate_bundle_root",
    "pack_bundle",
    "require_signature",
    "scan_bundle",
    "sign_bundle",
    "unpack_bundle",
    "verify_bundle",
    "verify_signature",
]
