"""Small DICOM CT series made from arrays inside tests (pydicom), with the quirks PACS exports have."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

STUDY_UID = "1.2.826.0.1.3680043.8.498.77001"
FRAME_UID = "1.2.826.0.1.3680043.8.498.77002"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_dataset(
    pixels: np.ndarray,
    position: Sequence[float],
    series_uid: str,
    instance: int,
    spacing: Sequence[float] = (0.8, 0.7),
    orientation: Sequence[float] = AXIAL,
) -> FileDataset:
    """One CT image; ``pixels`` is ``(rows, columns)`` int16 (stored as HU + 1024, rescale -1024)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "TEST01", "19700101", "O"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = STUDY_UID, "S1", "A1"
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20240101", "120000", ""
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", series_uid, 3
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = FRAME_UID, ""
    ds.Manufacturer = "test"
    ds.InstanceNumber = instance
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 2.5
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    ds.PixelData = (pixels.astype(np.int32) + 1024).astype(np.uint16).tobytes()
    return ds


def write_series(
    folder: Path,
    volume: np.ndarray,
    spacing: Sequence[float] = (0.7, 0.8, 2.5),
    origin: Sequence[float] = (-20.0, 30.0, -50.0),
    orientation: Sequence[float] = AXIAL,
    series_uid: str | None = None,
    depths: Sequence[float] | None = None,
    shift_per_slice: Sequence[float] = (0.0, 0.0, 0.0),
    first_instance: int = 0,
    order: Sequence[int] | None = None,
    compress: str | None = None,
) -> list[Path]:
    """Writes ``volume`` ``(columns, rows, images)`` (HU) as one file per image; returns the files by image index.

    ``spacing`` is (column step, row step, slice step) in mm, MONAI's axis order; ``depths`` overrides the slices'
    distances from ``origin`` along the normal (gaps, uneven spacing); ``shift_per_slice`` offsets each slice in
    the patient system (gantry tilt); ``order`` is the file-name order (shuffled exports); ``compress`` a transfer
    syntax UID to encode the pixels with.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    depths = [k * spacing[2] for k in range(volume.shape[2])] if depths is None else depths
    order = list(range(volume.shape[2])) if order is None else list(order)
    files = []
    for k in range(volume.shape[2]):
        position = np.array(origin) + depths[k] * normal + k * np.array(shift_per_slice)
        ds = ct_dataset(
            volume[:, :, k].T, position, series_uid, first_instance + k, (spacing[1], spacing[0]), orientation
        )
        if compress:
            ds.compress(compress)
        path = folder / f"IM{order.index(k):04d}"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def phantom(shape: tuple[int, int, int] = (24, 20, 8), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy CT ``(columns, rows, images)`` int16 and a label map with two classes, one ring with a hole."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 30, size=shape).astype(np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    ring = (np.hypot(i - 8, j - 9) < 6) & (np.hypot(i - 8, j - 9) >= 2.5)
    labels[..., 2:6][ring] = 1
    labels[17:21, 3:8, 1:5] = 2
    labels[18, 12:15, 4] = 2  # a second island on one image
    image[labels == 1] += 300
    image[labels == 2] -= 200
    return image, labels


def write_sr(path: Path, series_uid: str | None = None) -> None:
    """A non-image object (a structured report header) beside the images."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "SR", series_uid or generate_uid(), STUDY_UID
    ds.save_as(path, enforce_file_format=True)


def read_back(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)
