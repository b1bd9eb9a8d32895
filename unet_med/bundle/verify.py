"""``unet-med bundle verify``: check a received bundle (a folder or a packed zip) before trusting it.

The checks run in two stages. The *trust* stage reads the bundle as data and evaluates nothing from it:

0. ``signature`` (only with ``trusted_keys``): :func:`unet_med.bundle.signing.verify_signature` on the folder
   or zip as given, before anything else; when it refuses, every other check is reported as not run.
1. ``unpack`` (zips only): bounded sizes and names, safe paths, no links, every file listed in the manifest.
2. ``manifest``: an unpacked folder's files against its ``manifest.json`` (a folder without a manifest, such as a
   bundle in a repository, is skipped).
3. ``recognition``: :func:`unet_med.bundle.recognize.recognize_bundle`: every config is what the installed
   template makes from the bundle's task description, every file is of an allowed kind, and the weights are a
   weights-only state dict of the template network. Anything else is listed by file and key as custom code.
4. ``metadata``: valid against the MONAI metadata schema (offline, from ``schema``), semver ``version`` that is a
   key of ``changelog``.

Only when the bundle is recognised (or its code is trusted on purpose) does the *run* stage use it, with the
receiver's own code:

5. ``network in/out``: ``monai.bundle.verify_net_in_out`` on ``network_def`` of ``inference.json``.
6. ``torchscript`` / ``onnx``: exports made here (a sender's model files are never run) reproduce PyTorch.
7. ``end to end``: a synthetic case of the declared channels (an oblique, anisotropic NIfTI volume, or a PNG for
   2D bundles) through the bundle's ``inferring`` workflow (:func:`unet_med.bundle.run.run_bundle`); the mask must
   have the input's geometry.

Example::

    report = verify_bundle("bundles/unet", schema="meta_schema_20240725.json")
    print(report.format())
    raise SystemExit(0 if report.ok else 1)
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_med.bundle.manifest import BundleError, check_manifest
from unet_med.bundle.recognize import TRUST_FLAG, recognize_bundle

__all__ = ["Check", "VerifyReport", "verify_bundle"]

#: The checks that use the bundle, run only when it is recognised (or trusted on purpose).
_RUN_STAGE = ("network in/out", "torchscript", "onnx", "end to end")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass
class Check:
    """One line of the report: ``status`` is ``"PASS"``, ``"FAIL"`` or ``"SKIP"``; ``details`` are extra lines."""

    name: str
    status: str
    summary: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class VerifyReport:
    """The result of :func:`verify_bundle`; ``ok`` is true when no check failed."""

    bundle: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "FAIL" for c in self.checks)

    def format(self) -> str:
        """The report as text: one line per check, its details indented, then the verdict."""
        lines = [f"Verifying {self.bundle}"]
        for c in self.checks:
            lines.append(f"  {c.status:4}  {c.name:<16} {c.summary}" + (f"  ({c.seconds:.1f}s)" if c.seconds else ""))
            lines += [f"          - {d}" for d in c.details]
        failed = [c.name for c in self.checks if c.status == "FAIL"]
        lines.append(f"FAILED: {', '.join(failed)}" if failed else "OK: every check passed")
        return "\n".join(lines)


def _timed(report: VerifyReport, name: str, fn: Callable[[], tuple[str, str, list[str]]]) -> Check:
    start = time.perf_counter()
    try:
        status, summary, details = fn()
    except Exception as e:  # a check that crashes is a failed check, reported with its reason
        status, summary, details = "FAIL", f"{e.__class__.__name__}: {e}".splitlines()[0][:300], []
    check = Check(name, status, summary, details, time.perf_counter() - start)
    report.checks.append(check)
    return check


def _check_metadata(root: Path, schema: str | os.PathLike | None) -> tuple[str, str, list[str]]:
    meta = json.loads((root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    problems = []
    version = meta.get("version")
    changelog = meta.get("changelog")
    if not isinstance(version, str) or not SEMVER.match(version):
        problems.append(f"version {version!r} is not semver (MAJOR.MINOR.PATCH)")
    if not isinstance(changelog, dict) or version not in changelog:
        problems.append(f"version {version!r} is not a key of changelog")
    elif not all(isinstance(k, str) and SEMVER.match(k) for k in changelog):
        problems.append("changelog keys must be semver versions")
    checked = "version and changelog"
    if schema is not None:
        import jsonschema

        schema_doc = json.loads(Path(schema).read_text(encoding="utf-8"))
        validator = jsonschema.validators.validator_for(schema_doc)(schema_doc)  # the draft the schema names
        for error in sorted(validator.iter_errors(meta), key=lambda e: list(e.path)):
            where = "#".join(str(p) for p in error.path) or "(top level)"
            problems.append(f"{where}: {error.message}")
        url = str(meta.get("schema", ""))
        checked = f"schema {Path(schema).name}, {checked}"
        if url and Path(url).name != Path(schema).name:
            problems.append(f"metadata names schema {Path(url).name!r} but {Path(schema).name!r} was given")
    if problems:
        return "FAIL", f"{len(problems)} problem(s)", problems
    note = "" if schema is not None else " (no --schema given: schema not checked)"
    return "PASS", f"{checked} valid, version {version}{note}", []


def _net_in_out(root: Path) -> tuple[str, str, list[str]]:
    from monai.bundle import verify_net_in_out

    logging.getLogger("monai.bundle.scripts").setLevel(logging.WARNING)  # its input summary is noise here
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "inference.json"),
        device="cpu",
        n=2,
        p=2,
        bundle_root=str(root),
    )
    return "PASS", "network_def maps the declared input channels to the declared output channels and dtype", []


def _compare(name: str, got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> tuple[str, str, list]:
    diff = float((got - expected).abs().max())
    shape = list(expected.shape)
    if got.shape != expected.shape:
        return "FAIL", f"{name} output shape {list(got.shape)} != PyTorch {shape}", []
    if not torch.allclose(got, expected, atol=atol, rtol=rtol):
        return "FAIL", f"{name} differs from PyTorch: max |diff| {diff:.2e} > atol {atol:g} + rtol {rtol:g}", []
    return "PASS", f"{name} reproduces PyTorch on {shape}: max |diff| {diff:.1e}", []


def _torchscript(root: Path, work: Path, eager: torch.nn.Module, atol: float, rtol: float) -> tuple[str, str, list]:
    from unet_med.bundle.export import example_input_shape, export_torchscript

    path, source = export_torchscript(root, work / "model.ts"), "exported here"
    scripted = torch.jit.load(str(path), map_location="cpu").eval()
    x = torch.rand(example_input_shape(root), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        status, summary, details = _compare(f"TorchScript ({source})", scripted(x), eager(x), atol, rtol)
    return status, summary, details


def _onnx(root: Path, work: Path, eager: torch.nn.Module, atol: float, rtol: float) -> tuple[str, str, list]:
    from unet_med.bundle.export import export_onnx, require_onnx

    require_onnx()
    import onnxruntime

    path, source = export_onnx(root, work / "model.onnx"), "exported here"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    if not all(isinstance(d, int) for d in spec.shape):
        raise ValueError(f"{source}: expected a fixed input shape, got {spec.shape}")
    x = torch.rand(tuple(spec.shape), generator=torch.Generator().manual_seed(0))
    (out,) = session.run(None, {spec.name: x.numpy()})[:1]
    with torch.no_grad():
        return _compare(f"ONNX ({source})", torch.from_numpy(out), eager(x), atol, rtol)


def _synthetic_volume(root: Path, path: Path) -> Any:
    """A NIfTI volume of the declared channels and shape (n=2), with an oblique anisotropic LPS affine."""
    import nibabel as nib

    from unet_med.bundle.export import example_input_shape

    _, channels, *spatial = example_input_shape(root)
    spatial = [s + 3 for s in spatial]  # an odd size, so padding and cropping are exercised
    rng = np.random.default_rng(0)
    shape = (*spatial, channels) if channels > 1 else tuple(spatial)
    data = rng.normal(100, 20, size=shape).astype(np.float32)
    affine = np.eye(4)
    if len(spatial) == 3:
        angle = np.deg2rad(5)
        rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rot @ np.diag([1.1, 0.9, 2.7])
        affine[:3, 3] = [30.0, -10.0, 5.0]
    image = nib.Nifti1Image(data, affine)
    nib.save(image, path)
    return image


def _weights_fit(root: Path) -> str | None:
    """Why the bundle's networks do not fit the memory available (from its task), or ``None``."""
    from unet_med.bundle.task import TaskError, load_task
    from unet_med.inference.memory_plan import MemoryPlanError, ModelSpec, check_weights, default_budget

    try:
        check_weights(ModelSpec.from_task(load_task(root)), default_budget()[0], source=str(root))
    except MemoryPlanError as e:
        return str(e)
    except TaskError:  # no (valid) task: a bundle run with --trust-bundle-code; nothing to plan from
        pass
    return None


def _run_inferring(root: Path, input_path: Path, out: Path, trust: bool) -> Path:
    """The bundle's ``inferring`` workflow on ``input_path`` on the CPU (behind the gate); returns ``out``."""
    from unet_med.bundle.run import run_bundle

    logging.disable(logging.INFO)  # the engine's progress lines would break up the report
    try:
        run_bundle(root, "inferring", {"input": str(input_path), "output_dir": str(out), "device": "cpu"}, trust)
    finally:
        logging.disable(logging.NOTSET)
    return out


def _end_to_end(root: Path, work: Path, trust: bool) -> tuple[str, str, list[str]]:
    import nibabel as nib

    from unet_med.bundle.export import example_input_shape

    spatial = example_input_shape(root)[2:]
    if len(spatial) == 2:  # a microscopy bundle: a picture in, a picture out
        from PIL import Image

        cols, rows = spatial[0] + 3, spatial[1] + 3  # MONAI's (columns, rows) -> a picture's (rows, columns)
        picture = np.random.default_rng(0).integers(0, 256, (rows, cols), dtype=np.uint8)
        Image.fromarray(picture).save(work / "synthetic.png")
        out = _run_inferring(root, work / "synthetic.png", work / "out", trust)
        masks = sorted(p for p in out.iterdir() if p.is_file())
        if len(masks) != 1 or np.asarray(Image.open(masks[0])).shape != (rows, cols):
            return "FAIL", "inference did not reproduce the input size", [m.name for m in masks]
        return "PASS", f"inference.json on a synthetic {rows}x{cols} PNG: a mask of its size", []
    image = _synthetic_volume(root, work / "synthetic.nii.gz")
    out = _run_inferring(root, work / "synthetic.nii.gz", work / "out", trust)
    masks = sorted(out.rglob("*.nii*"))
    if len(masks) != 1:
        return "FAIL", f"expected one mask in the output folder, found {[m.name for m in masks]}", []
    mask: Any = nib.load(masks[0])
    if mask.shape[:3] != image.shape[:3] or not np.allclose(mask.affine, image.affine, atol=1e-4):
        return "FAIL", f"mask {mask.shape} does not match the input {image.shape} geometry", []
    return "PASS", f"inference.json on a synthetic {list(image.shape)} volume: the mask is in its geometry", []


@contextmanager
def _bundle_folder(path: Path, report: VerifyReport) -> Iterator[Path | None]:
    """The folder to verify: ``path`` itself, or a zip unpacked (with every check) into a temporary folder."""
    if path.is_dir():
        yield path
        return
    from unet_med.bundle.pack import unpack_bundle

    with tempfile.TemporaryDirectory(prefix="unet-med-verify-") as tmp:

        def unpack() -> tuple[str, str, list[str]]:
            try:
                unpack_bundle(path, Path(tmp) / "bundle")
            except BundleError as e:
                return "FAIL", str(e).splitlines()[0], e.problems
            return "PASS", "safe paths, no links, every file matches the manifest sha256", []

        check = _timed(report, "unpack", unpack)
        yield Path(tmp) / "bundle" if check.status == "PASS" else None


def _signature(path: Path, trusted_keys: str | os.PathLike, allow_unsigned: bool) -> tuple[str, str, list[str]]:
    from unet_med.bundle.signing import verify_signature

    signature = verify_signature(path, trusted_keys)
    if not signature.accepted(allow_unsigned):
        return "FAIL", signature.format(), signature.problems if len(signature.problems) > 1 else []
    if not signature.ok:
        return "SKIP", "unsigned, accepted (--allow-unsigned): the sender is not known", []
    return "PASS", signature.format(), []


def verify_bundle(
    bundle: str | os.PathLike,
    schema: str | os.PathLike | None = None,
    onnx: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    trusted_keys: str | os.PathLike | None = None,
    allow_unsigned: bool = False,
    trust_bundle_code: bool = False,
) -> VerifyReport:
    """Runs every check on a bundle folder or packed zip and returns the report (see the module docstring).

    Args:
        bundle: a bundle folder or a zip written by :func:`unet_med.bundle.pack.pack_bundle`.
        schema: the MONAI metadata JSON schema file (validation is offline); ``None`` skips the schema.
        onnx: check the ONNX export (needs the ``export`` extra); ``False`` reports it skipped.
        atol: absolute tolerance of the export checks.
        rtol: relative tolerance of the export checks.
        trusted_keys: a folder of pinned public keys (``*.pem``); when given, the bundle must be signed by one of
            them (and unchanged since) before any other check runs. ``None`` checks no signature.
        allow_unsigned: with ``trusted_keys``, accept a bundle that has no signature at all.
        trust_bundle_code: run the run stage on a bundle that is not recognised (its code is accepted on purpose;
            the recognition check still fails).
    """
    path = Path(bundle)
    report = VerifyReport(str(bundle))
    if not path.exists():
        report.checks.append(Check("bundle", "FAIL", f"{path} does not exist"))
        return report
    if trusted_keys is not None:
        if _timed(report, "signature", lambda: _signature(path, trusted_keys, allow_unsigned)).status == "FAIL":
            rest = (["unpack"] if path.is_file() else []) + ["manifest", "recognition", "metadata", *_RUN_STAGE]
            report.checks += [Check(name, "SKIP", "not run: the signature was refused (see above)") for name in rest]
            return report
    with _bundle_folder(path, report) as found:
        if found is None:
            return report
        root = found.resolve()
        if not (root / "configs").is_dir():
            report.checks.append(Check("layout", "FAIL", "no configs/ folder: not a bundle"))
            return report

        def manifest() -> tuple[str, str, list[str]]:
            problems = check_manifest(root)
            if problems is None:
                return "SKIP", "no manifest.json (an unpacked repository bundle): weights hash not recorded", []
            if problems:
                return "FAIL", "files differ from manifest.json", problems
            return "PASS", "every file matches its sha256 in manifest.json", []

        def recognition() -> tuple[str, str, list[str]]:
            result = recognize_bundle(root)
            if not result.ok:
                return "FAIL", f"custom code or unknown content in {len(result.problems)} place(s)", result.problems
            return "PASS", "every config is what the installed template makes; weights are data of its network", []

        trust = [_timed(report, "manifest", manifest), _timed(report, "recognition", recognition)]
        if (root / "configs" / "metadata.json").is_file():
            _timed(report, "metadata", lambda: _check_metadata(root, schema))
        if any(c.status == "FAIL" for c in trust) and not trust_bundle_code:
            reason = f"not run: the bundle is not recognised (see above; {TRUST_FLAG} accepts its code)"
            report.checks += [Check(name, "SKIP", reason) for name in _RUN_STAGE]
            return report
        weights = _weights_fit(root)
        if weights:  # a bundle whose networks alone exceed the memory available: nothing of it is built
            report.checks.append(Check("memory", "FAIL", weights))
            report.checks += [
                Check(name, "SKIP", "not run: the network does not fit (see above)") for name in _RUN_STAGE
            ]
            return report
        _timed(report, "network in/out", lambda: _net_in_out(root))
        with tempfile.TemporaryDirectory(prefix="unet-med-verify-work-") as tmp:
            work = Path(tmp)
            from unet_med.bundle.export import build_network

            try:
                eager = build_network(root, root / "models" / "model.pt")
            except Exception as e:  # weights that load but do not fit network_def
                eager, reason = None, f"{e.__class__.__name__}: {e}".splitlines()[0]
            if eager is None:
                report.checks.append(Check("torchscript", "FAIL", f"network_def with the weights: {reason}"))
            else:
                _timed(report, "torchscript", lambda: _torchscript(root, work, eager, atol, rtol))
            if not onnx:
                report.checks.append(Check("onnx", "SKIP", "not checked (--no-onnx)"))
            elif eager is not None:
                _timed(report, "onnx", lambda: _onnx(root, work, eager, atol, rtol))
            _timed(report, "end to end", lambda: _end_to_end(root, work, trust_bundle_code))
    return report
