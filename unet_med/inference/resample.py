"""Resampling a prediction onto another voxel grid slab by slab, so a large scan never needs a full-size grid.

MONAI's ``Invertd`` undoes ``Spacing`` with a sampling grid of the output's full size in float64 (for a
512x512x300 CT, 2.5 GB for the grid alone). Orientation, spacing, padding and cropping are all affine, so the
inverse is fully described by two affines: the prediction's (``src_affine``) and the input's (``dst_affine``).
:func:`resample_to_grid` maps ``dst`` voxel centres to ``src`` voxel coordinates one slab at a time and samples
there (nearest neighbour for masks, linear for probabilities); memory beyond input and output is one slab.

Example::

    mask = resample_to_grid(pred_mask[None], pred.affine, image.meta["original_affine"], (512, 512, 300))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["resample_to_grid"]


def resample_to_grid(
    src: torch.Tensor,
    src_affine: np.ndarray | torch.Tensor,
    dst_affine: np.ndarray | torch.Tensor,
    dst_shape: Sequence[int],
    mode: str = "nearest",
    slab_voxels: int = 1 << 21,
) -> torch.Tensor:
    """Samples ``src`` ``(C, *S_src)`` at the voxel centres of the grid ``(dst_affine, dst_shape)``.

    Args:
        src: the image to sample, channels first, 2 or 3 spatial axes.
        src_affine: ``src``'s voxel-to-world matrix, ``(d+1, d+1)`` or ``(4, 4)``.
        dst_affine: the target grid's voxel-to-world matrix.
        dst_shape: the target grid's spatial shape.
        mode: ``"nearest"`` (keeps ``src``'s dtype; for label maps) or ``"linear"`` (float32; for probabilities).
        slab_voxels: target voxels sampled per step along the last axis (bounds the temporary memory).

    Returns:
        ``(C, *dst_shape)``; points outside ``src`` take the nearest edge value (MONAI's ``border`` padding).

    Raises:
        ValueError: an unknown mode or mismatched dimensions.
    """
    if mode not in ("nearest", "linear"):
        raise ValueError(f"mode must be 'nearest' or 'linear', got {mode!r}")
    dims = src.ndim - 1
    if dims not in (2, 3) or len(dst_shape) != dims:
        raise ValueError(f"src {tuple(src.shape)} and dst_shape {tuple(dst_shape)} must both have 2 or 3 spatial axes")
    m = np.linalg.inv(_square(src_affine, dims)) @ _square(dst_affine, dims)  # dst voxel -> src voxel
    linear = torch.as_tensor(m[:dims, :dims], dtype=torch.float64)
    offset = torch.as_tensor(m[:dims, dims], dtype=torch.float64)
    src_size = torch.tensor(src.shape[1:], dtype=torch.float64)
    out_dtype = src.dtype if mode == "nearest" else torch.float32
    out = torch.zeros((src.shape[0], *dst_shape), dtype=out_dtype)
    plane = int(np.prod(dst_shape[:-1]))
    step = max(1, slab_voxels // max(plane, 1))
    axes = [torch.arange(n, dtype=torch.float64) for n in dst_shape[:-1]]
    for k0 in range(0, dst_shape[-1], step):
        k1 = min(k0 + step, dst_shape[-1])
        grid = torch.stack(torch.meshgrid(*axes, torch.arange(k0, k1, dtype=torch.float64), indexing="ij"), -1)
        coords = grid @ linear.T + offset  # (*slab, dims) in src voxels
        del grid
        if mode == "nearest":
            idx = torch.round(coords).long()
            idx = torch.minimum(idx.clamp(min=0), src_size.long() - 1)  # border padding, as MONAI's Spacing
            index: tuple[slice | torch.Tensor, ...] = (slice(None), *idx.unbind(-1))
            out[..., k0:k1] = src[index]
        else:
            norm = (2.0 * coords / (src_size - 1).clamp(min=1.0) - 1.0).flip(-1).float()  # grid_sample wants (x, y, z)
            sampled = F.grid_sample(
                src[None].float(), norm[None], mode="bilinear", padding_mode="border", align_corners=True
            )
            out[..., k0:k1] = sampled[0]
    return out


def _square(affine: np.ndarray | torch.Tensor, dims: int) -> np.ndarray:
    """The ``(d+1, d+1)`` part of a voxel-to-world matrix given as ``(d+1, d+1)`` or ``(4, 4)``."""
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if a.shape == (dims + 1, dims + 1):
        return a
    keep = [*range(dims), a.shape[0] - 1]
    return a[np.ix_(keep, keep)]
