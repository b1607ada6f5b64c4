"""Images for people: tensors in [-1, 1] / [0, 1] -> uint8 arrays and PNG grids of layers."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .nets.generator import Layers


def to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[N, C, H, W] or [C, H, W] -> uint8 [N, H, W, 3] / [H, W, 3] (one channel is repeated to RGB)."""
    lo, hi = value_range
    x = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    if x.shape[-3] == 1:
        x = x.repeat_interleave(3, dim=-3)
    x = (x * 255 + 0.5).to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def layer_rows(layers: Layers) -> list[np.ndarray]:
    """Rows background | foreground | mask | image, each uint8 [N, H, W, 3]."""
    return [to_uint8(layers.background), to_uint8(layers.foreground), to_uint8(layers.mask, (0.0, 1.0)),
            to_uint8(layers.image)]


def grid(rows: list[np.ndarray], pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile rows of images [N, H, W, 3] into one uint8 image with white padding."""
    n, h, w = rows[0].shape[:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for i in range(n):
            y, x = pad + r * (h + pad), pad + i * (w + pad)
            out[y:y + h, x:x + w] = row[i]
    if scale > 1:
        out = out.repeat(scale, 0).repeat(scale, 1)
    return out


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a PNG atomically (a viewer polling the file never sees half of it)."""
    import io

    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
