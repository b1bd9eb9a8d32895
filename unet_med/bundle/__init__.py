"""Bundle tooling: the template and task descriptions, recognition, signing, verifying, running, exporting,
packing and unpacking."""

from __future__ import annotations

from unet_med.bundle.build import build_bundle, check_bundle, new_bundle
from unet_med.bundle.export import export_onnx, export_torchscript
from unet_med.bundle.manifest import BundleError, check_manifest
from unet_med.bundle.pack import pack_bundle, unpack_bundle
from unet_med.bundle.paths import evaluated_weights, locate_bundle_root, run_dir, weights_dir
from unet_med.bundle.recognize import Recognition, recognize_bundle, require_recognized
from unet_med.bundle.run import run_bundle
from unet_med.bundle.signing import SignatureReport, generate_key, require_signature, sign_bundle, verify_signature
from unet_med.bundle.task import TaskError, load_task
from unet_med.bundle.template import render
from unet_med.bundle.verify import VerifyReport, verify_bundle

__all__ = [
    "BundleError",
    "Recognition",
    "SignatureReport",
    "TaskError",
    "VerifyReport",
    "build_bundle",
    "check_bundle",
    "check_manifest",
    "evaluated_weights",
    "export_onnx",
    "export_torchscript",
    "generate_key",
    "load_task",
    "locate_bundle_root",
    "new_bundle",
    "pack_bundle",
    "recognize_bundle",
    "render",
    "require_recognized",
    "require_signature",
    "run_bundle",
    "run_dir",
    "sign_bundle",
    "unpack_bundle",
    "verify_bundle",
    "verify_signature",
    "weights_dir",
]
