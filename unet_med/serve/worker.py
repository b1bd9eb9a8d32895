"""The worker: keeps every bundle's model loaded and segments complete series one at a time, oldest first.

Each bundle is recognised and loaded once, when the node starts (:func:`~unet_med.inference.bundle_model.load_bundle`,
the same check as ``unet-med predict``), into a :class:`~unet_med.inference.predictor.Predictor` writing the node's
format; a series then costs its inference and writing only, not the ~5 s start-up of a ``unet-med predict`` run.
The result is the file ``unet-med predict --format dicom-seg`` writes for the same series, named
``<workdir>/results/<series key>_seg.dcm`` (``_rtstruct.dcm``); its SOP Instance UID goes into the queue with the
``ready`` state.

A bundle's files changing while the node runs (a new ``models/model.pt``, edited configs) are noticed before the
next series and the bundle is recognised and loaded again; one that no longer passes recognition stops the node's
use of it (its series fail with the reason) rather than running unrecognised code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unet_med.serve.queue import Job, JobQueue

__all__ = ["Worker", "bundle_fingerprint"]

logger = logging.getLogger(__name__)


def bundle_fingerprint(root: str | os.PathLike) -> tuple:
    """Sizes and modification times of a bundle's configs and models (changes when its files do)."""
    root = Path(root)
    files = sorted(p for sub in ("configs", "models") for p in (root / sub).glob("*") if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


class Worker:
    """Runs the queue's ``complete`` series with the loaded bundles.

    Args:
        queue: the node's queue.
        workdir: the node's folder (series under ``incoming/``, results go to ``results/``).
        bundles: bundle name -> bundle folder.
        output_format: ``dicom-seg`` or ``rtstruct``.
        predictor_args: keyword arguments for every :class:`Predictor` (device, precision, ...).
    """

    def __init__(
        self,
        queue: JobQueue,
        workdir: str | os.PathLike,
        bundles: Mapping[str, str | os.PathLike],
        output_format: str = "dicom-seg",
        **predictor_args: Any,
    ) -> None:
        self.queue = queue
        self.workdir = Path(workdir)
        self.roots = {name: Path(root) for name, root in bundles.items()}
        self.output_format = output_format
        self.predictor_args = predictor_args
        self.predictors: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self._fingerprints: dict[str, tuple] = {}
        for name in self.roots:
            self._load(name, raise_errors=True)

    @property
    def models(self) -> dict[str, Any]:
        """The loaded :class:`BundleModel` of each bundle."""
        return {name: p.model for name, p in self.predictors.items()}

    def _load(self, name: str, raise_errors: bool = False) -> None:
        from unet_med.inference.bundle_model import BundleError, load_bundle
        from unet_med.inference.predictor import Predictor

        root = self.roots[name]
        self._fingerprints[name] = bundle_fingerprint(root)
        try:
            model = load_bundle(root, device="cpu")
            self.predictors[name] = Predictor(model, output_formats=self.output_format, **self.predictor_args)
            self.errors.pop(name, None)
            logger.info("bundle %s: recognised and loaded", name)
        except (BundleError, FileNotFoundError, ValueError) as e:
            if raise_errors:
                raise
            self.predictors.pop(name, None)
            self.errors[name] = " ".join(str(e).split())
            logger.error("bundle %s: no longer usable (%s)", name, self.errors[name])

    def refresh(self) -> None:
        """Recognises and loads again every bundle whose files changed."""
        for name, root in self.roots.items():
            if bundle_fingerprint(root) != self._fingerprints.get(name):
                logger.info("bundle %s: files changed; recognising it again", name)
                self._load(name)

    def run_one(self) -> Job | None:
        """Claims the oldest complete series and segments it; returns the job, or ``None`` when none waits."""
        self.refresh()
        job = self.queue.claim()
        if job is None:
            return None
        predictor = self.predictors.get(job.bundle or "")
        if predictor is None:
            reason = self.errors.get(job.bundle or "", f"bundle {job.bundle!r} is not served")
            self.queue.fail(job.series_uid, f"bundle {job.bundle}: {reason}")
            logger.error("series %s: failed (bundle %s unusable)", job.key, job.bundle)
            return job
        logger.info("series %s: segmenting with %s (run %d)", job.key, job.bundle, job.runs)
        result = predictor.predict_case(self.workdir / "incoming" / job.key, self.workdir / "results")
        if not result.ok:
            reason = _private(result.error or "failed", job)
            self.queue.fail(job.series_uid, reason)
            logger.error("series %s: failed (%s)", job.key, reason)
            return job
        path = result.outputs[0]
        uid = _sop_instance_uid(path)
        if self.queue.finish(job.series_uid, str(path), uid):
            logger.info("series %s: result ready (inference %.1f s)", job.key, result.seconds.get("infer", 0.0))
        else:  # reopened by a late instance while it ran: this result is stale
            path.unlink(missing_ok=True)
            logger.info("series %s: new instances arrived while it ran; it will run again", job.key)
        return job


def _sop_instance_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def _private(reason: str, job: Job) -> str:
    """A failure reason with the series UID replaced by its key (error messages name the series folder)."""
    return " ".join(reason.replace(job.series_uid, job.key).split())[:500]
