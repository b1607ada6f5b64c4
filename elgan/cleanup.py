"""Cleaning a segmentation mask that should hold one object: the largest region, its holes filled.

A U-Net trained on synthetic pairs errs on real photos in two typical ways: small false-foreground
blobs away from the object (bright patches of background) and holes inside it (white or light coats
that look like sky). When a photo is known to hold one object, both are removed by keeping the largest
8-connected foreground region and filling every background region inside it (background that is not
4-connected to the image border). The step is a declared part of a model (``UNetConfig.postprocess``),
applied the same way by the evaluation protocol, the app and the folder tool.

The cleaning acts on the *probability* map at the threshold that binarises it: dropped regions go to 0
and filled holes to 1, everything else keeps its probability, so thresholding the result at the same
threshold gives exactly the cleaned mask and soft cut-out edges stay soft.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .config import UNetConfig, knob_info

POSTPROCESS: tuple[str, ...] = knob_info(UNetConfig, "postprocess")["choices"]  # none | largest_filled
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity for the foreground's regions


def largest_filled(fg: np.ndarray) -> np.ndarray:
    """bool [H, W] -> bool [H, W]: the largest 8-connected region of `fg` with its holes filled.

    An empty mask stays empty; of regions of equal size the first in raster order is kept.
    """
    if fg.ndim != 2:
        raise ValueError(f"expected a [H, W] mask, got shape {fg.shape}")
    labels, n = ndimage.label(fg, structure=_EIGHT)
    if n == 0:
        return np.zeros_like(fg, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]  # pixels per region 1..n
    keep = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(keep)  # its default structure: background 4-connected to the border


def clean_probability(prob: np.ndarray, threshold: float, postprocess: str) -> np.ndarray:
    """Probability [H, W] -> the same map cleaned at `threshold` (a copy; "none" returns it unchanged)."""
    if postprocess not in POSTPROCESS:
        raise ValueError(f"postprocess must be one of {POSTPROCESS}, got {postprocess!r}")
    if postprocess == "none":
        return prob
    fg = prob > threshold
    keep = largest_filled(fg)
    out = prob.copy()
    out[fg & ~keep] = 0.0  # dropped regions
    out[keep & ~fg] = 1.0  # filled holes
    return out


def clean_batch(prob: torch.Tensor, threshold: float, postprocess: str) -> torch.Tensor:
    """Probabilities [B, 1, H, W] (CPU) -> the same batch, each map cleaned as `clean_probability`."""
    if postprocess == "none":
        return prob
    maps = [clean_probability(p[0].numpy(), threshold, postprocess) for p in prob]
    return torch.from_numpy(np.stack(maps))[:, None].to(prob.dtype)
