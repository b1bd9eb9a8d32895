"""Figures for model cards: an image, its truth and the prediction side by side, as one PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from unet_med.utils.io import atomic_path

__all__ = ["save_overlay_figure"]


def _plain(x: np.ndarray | torch.Tensor) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.squeeze(array)


def save_overlay_figure(
    image: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    title: str | None = None,
    rows_first: bool = False,
) -> Path:
    """Writes a three-panel PNG: the image, the truth over it, the prediction over it.

    Label maps are drawn with one colour per value (class or instance id; 0 is left clear), so the same function
    shows membrane masks and nuclei instances.

    Args:
        image: a 2D image (singleton axes are dropped); shown in grey, scaled to its 1-99th percentiles.
        truth: a 2D label map of the same shape.
        pred: a 2D label map of the same shape.
        path: the PNG to write (atomically).
        title: a line above the panels.
        rows_first: the arrays are ``(rows, columns)`` as in a picture; by default they are MONAI's
            ``(columns, rows)`` order (how ``LoadImage`` reads PNG and TIFF) and are transposed for display.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.color import label2rgb

    img, lab, prd = _plain(image).astype(np.float32), _plain(truth), _plain(pred)
    if img.ndim != 2 or lab.shape != img.shape or prd.shape != img.shape:
        raise ValueError(f"expected three 2D arrays of one shape, got {img.shape}, {lab.shape}, {prd.shape}")
    if not rows_first:
        img, lab, prd = img.T, lab.T, prd.T
    low, high = np.percentile(img, (1, 99))
    grey = np.clip((img - low) / (high - low), 0, 1) if high > low else np.zeros_like(img)
    panels = [
        ("image", grey),
        ("truth", label2rgb(lab.astype(np.int64), image=grey, bg_label=0, alpha=0.4)),
        ("prediction", label2rgb(prd.astype(np.int64), image=grey, bg_label=0, alpha=0.4)),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    for ax, (name, picture) in zip(axes, panels):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
