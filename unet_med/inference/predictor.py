"""Whole-scan prediction with a bundle: read, check, preprocess, sliding window, argmax, invert, write.

The path of one case: the bundle's ``LoadImaged`` (with :class:`~unet_med.data.sitk_reader.SITKReader` registered
for NRRD, MetaImage, TIFF and DICOM series) -> input checks -> the rest of the bundle's preprocessing -> MONAI's
``SlidingWindowInferer`` (Gaussian blending, optional mirroring TTA, autocast) -> argmax -> MONAI's ``Invertd``
(the mask lands in the input's geometry) -> an atomic write in the input's format.

Speed and memory:

- On a CPU, layers PyTorch runs slowly there (max pooling, 1x1 and stride-2 transposed convolutions, instance norm
  under autocast) are swapped for equivalents (:mod:`unet_med.inference.fastpath`).
- The network runs under ``torch.inference_mode`` and autocast (bf16 on a CPU with native bf16, fp16/bf16 on a GPU),
  in channels-last layout unless it uses instance norm (which undoes the layout in every layer).
- The stitching buffers (one per class plus the weight map) are float32 while they fit ``stitch_budget_bytes``;
  beyond that they are float16, which halves the largest buffers. The argmax is taken in slabs into a uint8 map.
- On a GPU the windows run on the GPU and the stitching stays there when the buffers fit in free GPU memory, else
  on the CPU (MONAI's ``sw_device``/``device``).

A 2D bundle given a 3D stack (a multi-page TIFF, a NIfTI volume of serial sections) segments it section by
section along the last axis and writes one stacked mask in the stack's geometry. A bundle with
``instance_postprocessing`` (background / interior / boundary classes) writes instance maps (uint16, or uint32
beyond 65535 objects), numbered per image or section.

Example::

    predictor = Predictor(load_bundle("bundles/unet"), overlap=0.5, mirror=True)
    result = predictor.predict_case("scan.nii.gz", "out/")  # writes out/scan_seg.nii.gz
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged, Spacingd, apply_transform

from unet_med.data.fingerprint import image_summary
from unet_med.data.readers import MAX_SCAN_VOXELS
from unet_med.data.sitk_reader import SITKReader
from unet_med.inference.bundle_model import BundleModel
from unet_med.inference.cases import case_header
from unet_med.inference.inferer import ScanInferer
from unet_med.inference.input_check import InputCheck, check_input, loaded_channels
from unet_med.inference.memory_plan import MemoryPlan, ModelSpec, current_rss, default_budget, plan_case
from unet_med.inference.output import case_name, output_path, write_image
from unet_med.inference.postprocess import (
    INVERT_VOXEL_LIMIT,
    argmax_uint8,
    invert_to_input,
    label_dtype,
    scores_to_labels,
)
from unet_med.inference.runtime import choose_precision, glibc_malloc_default, glibc_malloc_mapped

__all__ = ["CaseResult", "InputError", "Predictor", "argmax_uint8"]

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """A case that cannot be predicted: unreadable file, non-finite voxels, wrong dimensions or channels."""


@dataclasses.dataclass
class CaseResult:
    """What happened to one case.

    Attributes:
        input: the input path.
        outputs: the files written (mask first, then probabilities if asked).
        seconds: wall time per stage (``load``, ``infer``, ``write``) and ``total``.
        shape: the input's spatial shape (as stored, before any resampling).
        grid: the spatial shape the network ran on (after the bundle's resampling); ``()`` for a stack.
        input_check: the input compared with the training fingerprint (``None`` when the bundle keeps none).
        error: the reason the case failed, or ``None``.
    """

    input: Path
    outputs: list[Path] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    shape: tuple[int, ...] = ()
    grid: tuple[int, ...] = ()
    input_check: InputCheck | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def warnings(self) -> list[str]:
        """Where the input is unlike the training data (empty when it is alike, or when unchecked)."""
        return self.input_check.warnings if self.input_check is not None else []


def _softmax_inplace(scores: torch.Tensor, slab: int = 16) -> torch.Tensor:
    """Softmax over the channel axis of ``(C, X, ...)``, slab by slab, written back into ``scores``."""
    for start in range(0, scores.shape[1], slab):
        part = scores[:, start : start + slab]
        part.copy_(torch.softmax(part.float(), dim=0))
    return scores


def _original_shape(image: torch.Tensor) -> tuple[int, ...]:
    """The spatial shape of a preprocessed image before its resampling (its own shape where unknown)."""
    shape = getattr(image, "meta", {}).get("spatial_shape", ())
    return tuple(int(s) for s in shape) or tuple(int(s) for s in image.shape[1:])


class Predictor:
    """Runs a bundle's network over whole scans and writes masks in each input's own geometry.

    Args:
        model: the loaded bundle (:func:`~unet_med.inference.bundle_model.load_bundle`).
        device: where the windows run (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``
            (see :func:`~unet_med.inference.runtime.choose_precision`).
        overlap: sliding-window overlap (0.5 is nnU-Net's choice).
        sw_batch_size: windows per forward pass.
        mirror: mirroring TTA over ``mirror_axes`` (default all spatial axes): 2^d passes per window.
        mirror_axes: spatial axes to mirror.
        roi_size: window size; default the bundle's ``patch_size``.
        save_probabilities: also write the class probabilities (float32, ``<case>_prob``).
        compile: ``torch.compile`` the network (slow first call; pays off over many windows).
        channels_last: ``"auto"`` (on unless the network has instance norm), or a bool.
        stitch_budget_bytes: largest float32 stitching buffer (classes x voxels x 4) before float16 is used.
        tune_malloc: keep freed buffers during the sliding window, CPU only
            (:func:`~unet_med.inference.runtime.glibc_malloc_kept`).
        invert_voxel_limit: inputs with more voxels than this go back to their geometry through
            :func:`~unet_med.inference.resample.resample_to_grid` slab by slab, instead of MONAI's ``Invertd``
            (whose full-size float64 sampling grid alone takes 2.5 GB for a 512x512x300 CT).
        progress: show MONAI's per-window progress bar.
        fast_layers: on a CPU, swap max pooling, 1x1 and stride-2 transposed convolutions and instance norm for
            the equivalents in :mod:`unet_med.inference.fastpath` (same function, less time).
        output_formats: ``"nifti"`` (the input's own format), ``"dicom-seg"``, ``"rtstruct"``, or several
            (:mod:`unet_med.dicom.outputs`); the DICOM formats need a DICOM series input and a 3D class bundle, and
            SEG needs every class coded (checked here, before any case runs).
        series_uid: the SeriesInstanceUID to read from DICOM folders that hold several series.
        max_voxels: a case whose header promises more voxels (x channels) is refused before any voxel is read
            (:func:`~unet_med.inference.cases.case_header`); ``None``: no limit.
        max_memory: host memory budget in bytes for :mod:`~unet_med.inference.memory_plan`, which picks the
            window batch (at most ``sw_batch_size``) and the stitching precision per case from its header, or
            refuses the case; ``None``: 80% of the memory available now (on a GPU also its free memory).
    """

    def __init__(
        self,
        model: BundleModel,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        overlap: float = 0.5,
        sw_batch_size: int = 4,
        mirror: bool = False,
        mirror_axes: Sequence[int] | None = None,
        roi_size: Sequence[int] | None = None,
        save_probabilities: bool = False,
        compile: bool = False,
        channels_last: bool | str = "auto",
        stitch_budget_bytes: int = 1 << 30,
        tune_malloc: bool = True,
        invert_voxel_limit: int = INVERT_VOXEL_LIMIT,
        progress: bool = False,
        fast_layers: bool = True,
        output_formats: str | Sequence[str] = "nifti",
        series_uid: str | None = None,
        max_voxels: int | None = MAX_SCAN_VOXELS,
        max_memory: int | None = None,
    ) -> None:
        self.model = model
        self.output_formats, self.dicom_writer = _dicom_outputs(model, output_formats)
        self.series_uid = series_uid
        self.max_voxels = max_voxels
        self.device = torch.device(device)
        self.dtype = choose_precision(precision, self.device)
        self.roi_size = tuple(int(r) for r in (roi_size or model.patch_size))
        if len(self.roi_size) != model.spatial_dims:
            raise ValueError(f"roi_size {self.roi_size} must have {model.spatial_dims} entries")
        self.save_probabilities = save_probabilities
        self.tune_malloc = tune_malloc and self.device.type == "cpu"
        self.invert_voxel_limit = invert_voxel_limit
        self.mirror = mirror
        # mirroring and fold ensembles blend probabilities; a single network's windows are logits
        self.probabilities = mirror or bool(getattr(model.network, "returns_probabilities", False))
        self.inferer = ScanInferer(
            roi_size=self.roi_size,
            overlap=overlap,
            sw_batch_size=sw_batch_size,
            precision=precision,
            mirror=mirror,
            mirror_axes=mirror_axes,
            fast_layers=fast_layers,
            channels_last=channels_last,
            compile=compile,
            stitch_budget_bytes=stitch_budget_bytes,
            tune_malloc=tune_malloc,
            progress=progress,
        )
        self.network = model.network.to(self.device).eval()

        self.loader, self.rest_start = self._find_loader(model.preprocessing)
        for transform in model.preprocessing.transforms:
            if isinstance(transform, Spacingd):  # MONAI resamples in float64 by default: 2x the scan's float32 size
                transform.dtype = tuple(torch.float32 for _ in transform.dtype)
        self.loader.register(SITKReader(series_uid=series_uid))
        spacing = next((t for t in model.preprocessing.transforms if isinstance(t, Spacingd)), None)
        pixdim = None if spacing is None else spacing.spacing_transform.pixdim.tolist()
        self.spec = ModelSpec.from_network(model.network, self.roi_size, pixdim)
        self.sw_batch_size, self.stitch_budget_bytes = sw_batch_size, stitch_budget_bytes
        budgets = default_budget(self.device)
        self.budgets = budgets if max_memory is None else (max_memory, budgets[1])

    @staticmethod
    def _find_loader(pre: Compose) -> tuple[LoadImaged, int]:
        for i, t in enumerate(pre.transforms):
            if isinstance(t, LoadImaged):
                return t, i + 1
        raise ValueError("the bundle's preprocessing has no LoadImaged")

    # -- one case -------------------------------------------------------------------------------------------

    def predict_case(self, path: str | os.PathLike, output_dir: str | os.PathLike) -> CaseResult:
        """Predicts one case and writes its mask (and probabilities); a bad case returns a result with ``error``.

        Nothing is left half-written: every file is written to a temporary name and renamed when complete.
        """
        path = Path(path)
        result = CaseResult(input=path)
        t0 = time.perf_counter()
        try:
            series = self._dicom_series(path)
            with glibc_malloc_mapped():  # in a whole-run block: the reading buffers go back as they are freed
                data = self._load(path)
            result.input_check = data.get("input_check")
            if data.get("stack"):
                result.shape = tuple(int(s) for s in data["image"].shape)
                result.outputs, result.seconds = self._predict_stack(path, data["image"], Path(output_dir))
                result.seconds["total"] = time.perf_counter() - t0
                return result
            result.grid = tuple(int(s) for s in data["image"].shape[1:])
            result.shape = _original_shape(data["image"])
            # Inside a whole-run block (unet-med predict) freed buffers outlive each case. A large case gets
            # glibc's defaults for the rest of its run (the window buffers are handed back after the sliding
            # window), so that its peak memory stays that of one phase.
            large = max(math.prod(result.shape), math.prod(result.grid)) > self.invert_voxel_limit
            with glibc_malloc_default() if self.tune_malloc and large else contextlib.nullcontext():
                t1 = time.perf_counter()
                scores = self.infer(data["image"])
                t2 = time.perf_counter()
                result.outputs = self._write(path, data["image"], scores, Path(output_dir), series)
                t3 = time.perf_counter()
            result.seconds = {"load": t1 - t0, "infer": t2 - t1, "write": t3 - t2}
        except InputError as e:
            result.error = str(e)
        except (RuntimeError, ValueError, OSError, MemoryError) as e:  # anything else this case raised
            result.error = f"{path}: {type(e).__name__}: {' '.join(str(e).split())}"
        result.seconds["total"] = time.perf_counter() - t0
        return result

    def _dicom_series(self, path: Path) -> Any:
        """The source series (headers, checked) when a DICOM format is asked for, else ``None``."""
        if self.dicom_writer is None:
            return None
        from unet_med.dicom.series import read_series

        if not path.is_dir():
            raise InputError(f"{path}: --format {','.join(self.output_formats)} needs a DICOM series folder as input")
        try:
            return read_series(path, series_uid=self.series_uid)
        except ValueError as e:
            raise InputError(str(e)) from e

    def _load(self, path: Path) -> dict[str, Any]:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        plan = self.plan(path)  # the header first: nothing large is read for a scan that is too large or lies
        if plan is not None:
            self.inferer.sw_batch_size = plan.sw_batch_size
            self.inferer.stitch_budget_bytes = self.stitch_budget_bytes if plan.stitch_bytes == 4 else 0
        try:
            data = self.loader({"image": str(path)})
        except Exception as e:  # every reader raises its own types for corrupt and truncated files
            detail = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            raise InputError(f"{path}: unreadable or truncated file ({detail})") from e
        stack = self._check(path, data["image"])
        input_check = self._compare(data["image"], stack)
        if stack:
            return {"image": data["image"], "stack": True, "input_check": input_check}
        # The transforms one by one rather than Compose.__call__(data), which would keep the full-size loaded
        # image alive (its argument) until the last transform is done: on a large CT that is the peak memory.
        pre = self.model.preprocessing
        for transform in pre.transforms[self.rest_start :]:
            data = apply_transform(transform, data, pre.map_items, pre.unpack_items, pre.log_stats)
        return {**data, "input_check": input_check}

    def _compare(self, image: torch.Tensor, stack: bool) -> InputCheck | None:
        """The freshly loaded image against the task's training fingerprint (:mod:`.input_check`), if it keeps one."""
        task = self.model.task or {}
        if "fingerprint" not in task:
            return None
        dims = 2 if stack else self.model.spatial_dims  # a stack of sections: its intensities, not its geometry
        affine = np.asarray(getattr(image, "affine", np.eye(4)), dtype=np.float64)
        summary = image_summary(loaded_channels(image), affine, dims)
        return check_input(summary, task["fingerprint"], task["modality"], task["channels"])

    def plan(self, path: Path) -> MemoryPlan | None:
        """Checks the case's header (:func:`~unet_med.inference.cases.case_header`) and plans its memory
        (:func:`~unet_med.inference.memory_plan.plan_case`; ``None`` for a network of unknown sizes).

        Raises:
            InputError: a header that is unreadable, too large or lies; a case that does not fit the budget.
        """
        try:
            info = case_header(path, self.max_voxels)
            if self.spec is None:
                return None
            unprepared = 0 if self.network in self.inferer._prepared else self.spec.weight_bytes() // 2
            return plan_case(
                path,
                info,
                self.spec,
                *self.budgets,
                sw_batch_size=self.sw_batch_size,
                compute_bytes=torch.finfo(self.dtype).bits // 8,
                device=self.device,
                base=current_rss() + unprepared,
                float32_stitch_limit=self.stitch_budget_bytes,
            )
        except (OSError, ValueError) as e:
            raise InputError(" ".join(str(e).split())) from e

    def _check(self, path: Path, image: torch.Tensor) -> bool:
        """Checks dimensions, channels and values of a freshly loaded image (channels not yet first).

        Returns:
            Whether the image is a stack of 2D sections for a 2D bundle (segmented section by section).
        """
        meta = getattr(image, "meta", {})
        spatial = tuple(int(s) for s in meta.get("spatial_shape", image.shape))
        ch_dim = meta.get("original_channel_dim", float("nan"))
        has_channel = isinstance(ch_dim, int) or (isinstance(ch_dim, str) and ch_dim != "no_channel")
        channels = int(image.shape[int(ch_dim)]) if has_channel else 1
        spatial = spatial[: image.ndim - (1 if has_channel else 0)]
        dims, want_c = self.model.spatial_dims, self.model.in_channels
        shape = "x".join(str(s) for s in image.shape)
        if len(spatial) < dims or (dims == 3 and min(spatial) == 1):
            raise InputError(f"{path}: a 2D image (shape {shape}) given to a 3D bundle, which needs a volume")
        stack = dims == 2 and len(spatial) == 3 and not has_channel and self.model.in_channels == 1
        if len(spatial) > dims and not stack:
            raise InputError(f"{path}: a {len(spatial)}D image (shape {shape}) given to a {dims}D bundle")
        if channels != want_c and not stack:
            if dims == 3 and image.ndim == 4 and want_c == 1:
                raise InputError(
                    f"{path}: a 4D image (shape {shape}) where a 3D volume is expected; "
                    f"the bundle takes 1 channel, this has {channels} along the 4th axis"
                )
            raise InputError(f"{path}: wrong channel count: {channels} channels, the bundle expects {want_c}")
        if image.is_floating_point():
            flat = image.reshape(-1)
            step = 1 << 22  # a slab at a time: no full-size boolean maps
            n_nan = sum(int(torch.isnan(flat[i : i + step]).sum()) for i in range(0, flat.numel(), step))
            n_inf = sum(int(torch.isinf(flat[i : i + step]).sum()) for i in range(0, flat.numel(), step))
            if n_nan or n_inf:
                raise InputError(f"{path}: {n_nan} NaN and {n_inf} inf voxels; fix or mask them before prediction")
        return stack

    def _predict_stack(self, path: Path, volume: torch.Tensor, output_dir: Path) -> tuple[list[Path], dict[str, float]]:
        """Segments a stack ``(X, Y, Z)`` section by section with a 2D bundle and writes one stacked mask."""
        if self.save_probabilities:
            logger.warning("%s: a stack of sections; only its mask is written, not the probabilities", path)
        pre = self.model.preprocessing
        array = volume.as_tensor() if isinstance(volume, MetaTensor) else torch.as_tensor(volume)
        affine = np.asarray(volume.affine if isinstance(volume, MetaTensor) else np.eye(4), dtype=np.float64)
        seconds = {"load": 0.0, "infer": 0.0, "write": 0.0}
        masks = []
        for k in range(array.shape[-1]):
            t0 = time.perf_counter()
            section = MetaTensor(array[..., k].clone(), meta={"original_channel_dim": "no_channel"})
            data: Any = {"image": section}
            for transform in pre.transforms[self.rest_start :]:
                data = apply_transform(transform, data, pre.map_items, pre.unpack_items, pre.log_stats)
            t1 = time.perf_counter()
            scores = self.infer(data["image"])
            t2 = time.perf_counter()
            labels = self._labels(scores)
            inverted, _ = self._invert(labels[None], data["image"], nearest=True)
            masks.append(inverted[..., 0])
            seconds["load"] += t1 - t0
            seconds["infer"] += t2 - t1
            seconds["write"] += time.perf_counter() - t2
        t3 = time.perf_counter()
        stacked = label_dtype(np.stack(masks, axis=-1))
        out = write_image(stacked, affine, output_path(path, output_dir), spatial_dims=3)
        seconds["write"] += time.perf_counter() - t3
        return [out], seconds

    # -- the sliding window ---------------------------------------------------------------------------------

    def infer(self, image: torch.Tensor) -> torch.Tensor:
        """Sliding-window scores for one preprocessed image ``(C_in, *spatial)`` (:class:`ScanInferer`).

        Returns:
            ``(num_classes, *spatial)`` on the CPU: logits, or probabilities when mirroring or with a fold
            ensemble (the averaged softmax is what gets blended).
        """
        return self.inferer(image.unsqueeze(0), self.network)[0].cpu()

    # -- back to the input's geometry -----------------------------------------------------------------------

    def _invert(self, pred: torch.Tensor, image: torch.Tensor, nearest: bool) -> tuple[np.ndarray, np.ndarray]:
        """Undoes the bundle's preprocessing on ``pred`` ``(C, *spatial)`` (:func:`invert_to_input`)."""
        return invert_to_input(pred, image, self.model.preprocessing, nearest, self.invert_voxel_limit)

    def _labels(self, scores: torch.Tensor) -> torch.Tensor:
        """The label map ``(*spatial)`` from scores ``(C, *spatial)``: classes, or instances for instance bundles."""
        min_size = None if self.model.instances is None else int(self.model.instances.get("min_size", 8))
        return scores_to_labels(scores, self.model.keep_largest, min_size, probabilities=self.probabilities)

    def _write(
        self, path: Path, image: torch.Tensor, scores: torch.Tensor, output_dir: Path, series: Any = None
    ) -> list[Path]:
        dims = self.model.spatial_dims
        mask = self._labels(scores)
        if not self.save_probabilities:
            del scores
        inverted, affine = self._invert(mask[None], image, nearest=True)
        del mask
        labels = label_dtype(inverted[..., 0])
        dicom = {}
        if self.dicom_writer is not None:  # built (and checked) before anything of this case is written
            dicom = self.dicom_writer.datasets(labels, affine, series, self.output_formats)
        outputs = []
        if self.save_probabilities:  # the probabilities go first and the mask last, so a mask means both are done
            probs = scores if self.probabilities else _softmax_inplace(scores)
            prob, prob_affine = self._invert(probs.float(), image, nearest=False)
            prob_path = output_path(path, output_dir, postfix="prob", probabilities=True, series_uid=self.series_uid)
            outputs.append(write_image(prob.astype(np.float32, copy=False), prob_affine, prob_path, dims))
            del prob
        written = self.dicom_writer.save(dicom, output_dir, case_name(path, self.series_uid)) if dicom else []
        if "nifti" in self.output_formats:
            written.insert(
                0, write_image(labels, affine, output_path(path, output_dir, series_uid=self.series_uid), dims)
            )
        return written + outputs


def _dicom_outputs(model: BundleModel, formats: str | Sequence[str]) -> tuple[tuple[str, ...], Any]:
    """The parsed output formats and, when a DICOM one is among them, the checked DICOM writer."""
    from unet_med.dicom.outputs import DICOM_FORMATS, DicomResultWriter, parse_formats

    parsed = parse_formats(formats)
    if not set(parsed) & set(DICOM_FORMATS):
        return parsed, None
    asked = ",".join(f for f in parsed if f in DICOM_FORMATS)
    if model.spatial_dims != 3:
        raise ValueError(f"{model.name}: --format {asked} needs a 3D bundle (this one is 2D)")
    if model.instances is not None:
        raise ValueError(f"{model.name}: --format {asked}: this bundle writes instance maps, not classes")
    writer = DicomResultWriter(model.class_names, model.class_codes, (model.name, model.version or "0"))
    writer.check(parsed)
    return parsed, writer
