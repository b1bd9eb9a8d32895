"""The round trip through a real PACS: Orthanc sends a series to the node, the SEG comes back into Orthanc, equal
voxel for voxel to what ``unet-med predict --format dicom-seg`` writes for the same series."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.serve.node_helpers import (
    REPO,
    free_port,
    node_listening,
    start_node,
    stop_node,
    synthetic_series,
    wait_until,
)
from unet_med.cli import main
from unet_med.dicom import read_series

pytest.importorskip("pynetdicom")


def _labels(seg: pydicom.Dataset, source: Path) -> np.ndarray:
    """The SEG's label map on the source series' images, first to last along the slice normal."""
    series = read_series(source)
    uids = [str(ds.SOPInstanceUID) for ds in series.datasets]
    return hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(uids, combine_segments=True)


def _round_trip(tmp_path: Path, orthanc_factory, source: Path, bundle: Path) -> None:
    port = free_port()
    orthanc = orthanc_factory(port)
    node = start_node(tmp_path / "work", port, orthanc.destination, bundle=bundle)
    try:
        wait_until(lambda: node_listening(port), 180, "the node to listen")
        series_id = orthanc.upload(source)
        orthanc.post("/modalities/ainode/store", {"Resources": [series_id], "Synchronous": True})
        (seg_id,) = wait_until(orthanc.seg_instances, 300, "the SEG in Orthanc", every=0.5)
    finally:
        stop_node(node)
    seg = pydicom.dcmread(io.BytesIO(orthanc.request(f"/instances/{seg_id}/file")))
    meta = orthanc.get(f"/instances/{seg_id}/metadata?expand")
    assert (meta["Origin"], meta["RemoteAET"]) == ("DicomProtocol", "UNETMED")

    out = tmp_path / "predict"
    assert main(["predict", "--quiet", "--bundle", str(bundle), "--input", str(source), "--output", str(out),
                 "--format", "dicom-seg", "--threads", "1"]) in (0, 3)  # fmt: skip
    (expected,) = out.glob("*_seg.dcm")
    node_labels, predict_labels = _labels(seg, source), _labels(pydicom.dcmread(expected), source)
    assert node_labels.any()
    np.testing.assert_array_equal(node_labels, predict_labels)
    assert seg.SeriesInstanceUID != pydicom.dcmread(next(source.iterdir())).SeriesInstanceUID


def test_orthanc_round_trip_synthetic_series(tmp_path, orthanc_factory):
    source = synthetic_series(tmp_path / "in", seed=4)
    for path in source.iterdir():  # a one-part name highdicom warns about, quoting it, when it copies it into the SEG
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = "Zebulon", "PID-5551234"
        ds.save_as(path)
    _round_trip(tmp_path, orthanc_factory, source, REPO / "bundles" / "unet")
    log = (tmp_path / "node.log").read_text()
    assert "routed to unet" in log
    for secret in ("Zebulon", "PID-5551234", "19700101"):
        assert secret not in log


@pytest.mark.slow
def test_orthanc_round_trip_sts_019(tmp_path, orthanc_factory, shared_dir):
    """STS_019 (47 CT images of 512 x 512) with the sarcoma bundle: about a minute of inference, twice."""
    source = shared_dir / "data" / "SarcomaCT_DICOM" / "STS_019" / "CT" / "image"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    _round_trip(tmp_path, orthanc_factory, source, REPO / "bundles" / "sarcoma_ct")
