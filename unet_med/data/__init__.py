"""The data layer: datalists for MSD and folder layouts, readers, dataset checks and synthetic demo data."""

from __future__ import annotations

from unet_med.data.checks import check_dataset
from unet_med.data.datalist import (
    DatasetError,
    channel_names_from_dataset_json,
    labels_from_dataset_json,
    load_datalist,
    read_datalist,
    split_datalist,
    write_datalist,
)
from unet_med.data.prepare import find_images, inference_datalist, prepare_datalist, require_cases
from unet_med.data.readers import ImageInfo, ImageReadError, read_array, read_header
from unet_med.data.sitk_reader import SITKReader
from unet_med.data.synthetic import make_demo_dataset_2d, make_demo_dataset_3d, synthetic_image_2d, synthetic_volume

__all__ = [
    "DatasetError",
    "ImageInfo",
    "ImageReadError",
    "SITKReader",
    "channel_names_from_dataset_json",
    "check_dataset",
    "find_images",
    "inference_datalist",
    "labels_from_dataset_json",
    "load_datalist",
    "make_demo_dataset_2d",
    "make_demo_dataset_3d",
    "prepare_datalist",
    "read_array",
    "read_datalist",
    "read_header",
    "require_cases",
    "split_datalist",
    "synthetic_image_2d",
    "synthetic_volume",
    "write_datalist",
]
