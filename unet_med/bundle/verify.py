"""``unet-med bundle verify``: check a received bundle (a folder or a packed zip) before trusting it.

The checks run in two stages. The *trust* stage reads the bundle as data and evaluates nothing from it:

0. ``signature`` (only with ``trusted_keys``): :func:`unet_med.bundle.signing.verify_signature` on the folder
   or zip as given, before anything else; when it refuses, every other check is reported as not run.
1. ``unpack`` (zips only): safe paths, no links, every file listed in the manifest with a matching sha256.
2. ``manifest``: an unpacked folder's files against its ``manifest.json`` (the sha256 of the weights and
   exports is recorded there; a folder without a manifest, such as a bundle in a repository, is skipped).
3. ``safety scan``: :func:`unet_med.bundle.scan.scan_bundle` over every config and ``logging.conf``.
4. ``weights``: ``models/model.pt`` loads with ``torch.load(weights_only=True)``.
5. ``metadata``: valid against the MONAI metadata schema (offline, from ``schema``), semver ``version`` that is a
   key of ``changelog``.

Only when 1-4 pass does the *run* stage evaluate the configs:

6. ``configs``: every run combination (the base config alone, base + each overlay, each standalone config)
   parses and every ``@`` reference resolves.
7. ``network in/out``: ``monai.bundle.verify_net_in_out`` on ``network_def`` with the declared channels.
8. ``torchscript`` / ``onnx``: the exports (``models/model.ts``/``.onnx`` when packed, otherwise exported afresh)
   reproduce the PyTorch output within ``atol``/``rtol``.
9. ``end to end``: a synthetic NIfTI volume of the declared channels and shape (with an oblique, anisotropic
   affine) goes through each inference config; the mask must have the input's shape and affine.

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
from unet_med.bundle.scan import config_files, scan_bundle, walk_config

__all__ = ["Check", "VerifyReport", "run_configs", "verify_bundle"]

#: The checks that evaluate the bundle's configs, run only when the trust stage passed.
_RUN_STAGE = ("configs", "network in/out", "torchscript", "onnx", "end to end")
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


def _weights(root: Path) -> tuple[str, str, list[str]]:
    from unet_med.engines import load_state_dict

    path = root / "models" / "model.pt"
    state = load_state_dict(path)
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)] if isinstance(state, dict) else []
    if not tensors:
        return "FAIL", f"{path.name} holds no tensors", []
    numel = sum(t.numel() for t in tensors)
    return "PASS", f"models/model.pt loads with weights_only=True ({len(tensors)} tensors, {numel:,} values)", []


def run_configs(root: Path) -> list[tuple[str, list[Path]]]:
    """The config combinations a bundle runs: the base alone, base + each overlay, each standalone config.

    A config is standalone when it sets ``bundle_root`` or ``imports`` itself, or defines ``network_def``;
    otherwise it is an overlay on the base config (see :func:`unet_med.bundle.export.base_config`).
    """
    from unet_med.bundle.export import base_config

    base = base_config(root)
    combos: list[tuple[str, list[Path]]] = [(base.name, [base])]
    for path in config_files(root):
        if path == base or path.name == "metadata.json" or path.suffix != ".json":
            continue
        content = json.loads(path.read_text(encoding="utf-8"))
        standalone = isinstance(content, dict) and bool({"bundle_root", "imports", "network_def"} & set(content))
        combos.append((path.name, [path]) if standalone else (f"{base.name} + {path.name}", [base, path]))
    return combos


def _unresolved_references(root: Path, configs: list[Path]) -> list[str]:
    from monai.bundle.reference_resolver import ReferenceResolver

    from unet_med.bundle.export import bundle_parser

    parser = bundle_parser(root, configs)
    parser.resolve_macro_and_relative_ids()
    missing = []
    for key, value in walk_config(parser.get()):
        if isinstance(value, str) and value[:1] in ("@", "$"):
            missing += [f"{key}: @{ref}" for ref in ReferenceResolver.match_refs_pattern(value) if ref not in parser]
    return missing


def _check_configs(root: Path) -> tuple[str, str, list[str]]:
    combos = run_configs(root)
    problems = []
    for name, configs in combos:
        try:
            problems += [f"{name}: unresolved {m}" for m in _unresolved_references(root, configs)]
        except Exception as e:  # a config that does not parse
            problems.append(f"{name}: does not parse ({e.__class__.__name__}: {e})")
    if problems:
        return "FAIL", "unresolved references or parse errors", problems
    return "PASS", f"{len(combos)} run configs parse, every @ reference resolves", [n for n, _ in combos]


def _net_in_out(root: Path) -> tuple[str, str, list[str]]:
    from monai.bundle import verify_net_in_out

    from unet_med.bundle.export import base_config

    logging.getLogger("monai.bundle.scripts").setLevel(logging.WARNING)  # its input summary is noise here
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(base_config(root)),
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

    path = root / "models" / "model.ts"
    source = "models/model.ts"
    if not path.is_file():
        path, source = export_torchscript(root, work / "model.ts"), "fresh export"
    scripted = torch.jit.load(str(path), map_location="cpu").eval()
    x = torch.rand(example_input_shape(root), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        status, summary, details = _compare(f"TorchScript ({source})", scripted(x), eager(x), atol, rtol)
    return status, summary, details


def _onnx(root: Path, work: Path, eager: torch.nn.Module, atol: float, rtol: float) -> tuple[str, str, list]:
    from unet_med.bundle.export import export_onnx, require_onnx

    require_onnx()
    import onnxruntime

    path = root / "models" / "model.onnx"
    source = "models/model.onnx"
    if not path.is_file():
        path, source = export_onnx(root, work / "model.onnx"), "fresh export"
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


def _inference_combos(root: Path) -> list[tuple[str, list[Path]]]:
    """The bundle's config combinations that define an ``inferring`` workflow."""
    return [(n, c) for n, c in run_configs(root) if any(_defines(p, "inferring") for p in c)]


def _run_inferring(root: Path, configs: list[Path], input_path: Path, out: Path, **overrides: Any) -> Path:
    """Runs a bundle's ``inferring`` workflow on ``input_path`` on the CPU; returns the output folder."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=[str(c) for c in configs],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        run_id="inferring",
        bundle_root=str(root),
        input=str(input_path),
        output_dir=str(out),
        device="cpu",
        **overrides,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return out


def _end_to_end_2d(root: Path, work: Path, size: list[int]) -> tuple[str, str, list[str]]:
    """The inference workflows of a single-channel 2D bundle on a synthetic 8-bit PNG: one mask of its size."""
    from PIL import Image

    rows, cols = size[1], size[0]  # MONAI's (columns, rows) order -> a picture's (rows, columns)
    picture = np.random.default_rng(0).integers(0, 256, (rows, cols), dtype=np.uint8)
    Image.fromarray(picture).save(work / "synthetic.png")
    combos = _inference_combos(root)
    if not combos:
        return "SKIP", "no inference config (none defines 'inferring')", []
    details, problems = [], []
    for i, (name, configs) in enumerate(combos):
        if any("torchscript" in p.stem for p in configs):
            details.append(f"{name}: skipped (TorchScript overlays are checked on 3D bundles)")
            continue
        out = _run_inferring(root, configs, work / "synthetic.png", work / f"out-{i}")
        masks = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".png", ".tif", ".gz", ".nii"))
        if len(masks) != 1:
            problems.append(f"{name}: expected one mask in the output folder, found {[m.name for m in masks]}")
            continue
        shape = np.asarray(Image.open(masks[0])).shape if masks[0].suffix in (".png", ".tif") else None
        if shape != (rows, cols):
            problems.append(f"{name}: mask {masks[0].name} of shape {shape} does not match the input {(rows, cols)}")
            continue
        details.append(f"{name}: mask {list(shape)} of the input's size")
    if problems:
        return "FAIL", "inference did not reproduce the input size", problems + details
    return "PASS", f"{len(details)} inference workflow(s) on a synthetic PNG keep its size", details


def _end_to_end(root: Path, work: Path) -> tuple[str, str, list[str]]:
    import nibabel as nib

    from unet_med.bundle.export import example_input_shape

    _, channels, *spatial = example_input_shape(root)
    if len(spatial) == 2 and channels == 1:  # a microscopy bundle: a picture in, a picture out
        return _end_to_end_2d(root, work, [s + 3 for s in spatial])
    image = _synthetic_volume(root, work / "synthetic.nii.gz")
    combos = _inference_combos(root)
    if not combos:
        return "SKIP", "no inference config (none defines 'inferring')", []
    details, problems = [], []
    for i, (name, configs) in enumerate(combos):
        overrides = {}
        if any("torchscript" in p.stem for p in configs) and not (root / "models" / "model.ts").is_file():
            if not (work / "model.ts").is_file():
                details.append(f"{name}: skipped (no models/model.ts and no fresh export)")
                continue
            overrides["model_file"] = str(work / "model.ts")  # the fresh export checked above
        out = _run_inferring(root, configs, work / "synthetic.nii.gz", work / f"out-{i}", **overrides)
        masks = sorted(out.rglob("*.nii*"))
        if len(masks) != 1:
            problems.append(f"{name}: expected one mask in the output folder, found {[m.name for m in masks]}")
            continue
        mask: Any = nib.load(masks[0])
        if mask.shape[:3] != image.shape[:3] or not np.allclose(mask.affine, image.affine, atol=1e-4):
            problems.append(f"{name}: mask {mask.shape} does not match the input {image.shape} geometry")
            continue
        details.append(f"{name}: mask {list(mask.shape)} in the input's geometry")
    if problems:
        return "FAIL", "inference did not reproduce the input geometry", problems + details
    return "PASS", f"synthetic {list(image.shape)} volume through {len(combos)} inference config(s)", details


def _defines(path: Path, key: str) -> bool:
    content = json.loads(path.read_text(encoding="utf-8"))
    return isinstance(content, dict) and key in content


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
    """
    path = Path(bundle)
    report = VerifyReport(str(bundle))
    if not path.exists():
        report.checks.append(Check("bundle", "FAIL", f"{path} does not exist"))
        return report
    if trusted_keys is not None:
        if _timed(report, "signature", lambda: _signature(path, trusted_keys, allow_unsigned)).status == "FAIL":
            rest = (["unpack"] if path.is_file() else []) + ["manifest", "safety scan", "weights", "metadata"]
            rest += _RUN_STAGE
            report.checks += [Check(name, "SKIP", "not run: the signature was refused (see above)") for name in rest]
            return report
    with _bundle_folder(path, report) as found:
        if found is None:
            return report
        root = found.resolve()
        if not (root / "configs" / "metadata.json").is_file():
            report.checks.append(Check("layout", "FAIL", "no configs/metadata.json: not a bundle"))
            return report

        def manifest() -> tuple[str, str, list[str]]:
            problems = check_manifest(root)
            if problems is None:
                return "SKIP", "no manifest.json (an unpacked repository bundle): weights hash not recorded", []
            if problems:
                return "FAIL", "files differ from manifest.json", problems
            return "PASS", "every file matches its sha256 in manifest.json (weights and exports included)", []

        def scan() -> tuple[str, str, list[str]]:
            findings = scan_bundle(root)
            if findings:
                return "FAIL", f"{len(findings)} unsafe construct(s); nothing was evaluated", [str(f) for f in findings]
            n = len(config_files(root))
            return "PASS", f"{n} configs and logging.conf: no unsafe expression, _target_ or logging class", []

        trust = [_timed(report, "manifest", manifest), _timed(report, "safety scan", scan)]
        trust.append(_timed(report, "weights", lambda: _weights(root)))
        _timed(report, "metadata", lambda: _check_metadata(root, schema))
        if any(c.status == "FAIL" for c in trust):
            for name in _RUN_STAGE:
                report.checks.append(Check(name, "SKIP", "not run: the bundle is not trusted (see above)"))
            return report
        _timed(report, "configs", lambda: _check_configs(root))
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
            _timed(report, "end to end", lambda: _end_to_end(root, work))
    return report
