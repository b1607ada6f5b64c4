"""Images for people: tensors in [-1, 1] / [0, 1] -> uint8 arrays, PNG grids of layers, captioned strips.

Views are enlarged by pixel repetition (nearest), never resampled: the pixels are the model's, and PNGs of
repeated pixels stay small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .nets.generator import Layers

VIEW_PX = 256  # single views are upscaled to about this many pixels


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


def upscale(image: np.ndarray, target: int | None = VIEW_PX) -> np.ndarray:
    """Nearest upscaling by the integer factor that brings the longer side closest to `target` (None: as is)."""
    k = 1 if target is None else max(1, round(target / max(image.shape[:2])))
    return image if k == 1 else image.repeat(k, 0).repeat(k, 1)


def view(image: torch.Tensor, target: int | None = VIEW_PX) -> np.ndarray:
    """One image [1, 3, H, W] in [-1, 1] -> uint8 [~target, ~target, 3]."""
    return upscale(to_uint8(image[0]), target)


def cutout_rgba(foreground: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The foreground layer with the mask as alpha: uint8 [H, W, 4] (one sample of [1, ...] tensors)."""
    rgb = to_uint8(foreground[0])
    alpha = (mask[0, 0].float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return np.concatenate([rgb, alpha[..., None]], -1)


def layer_views(layers: Layers, target: int | None = VIEW_PX) -> dict[str, np.ndarray]:
    """background, foreground, mask, image (uint8 RGB) and cutout (RGBA) of one sample, each upscaled to
    ~target px (None: at the model's native size)."""
    views = {"background": to_uint8(layers.background[0]), "foreground": to_uint8(layers.foreground[0]),
             "mask": to_uint8(layers.mask[0], (0.0, 1.0)), "image": to_uint8(layers.image[0]),
             "cutout": cutout_rgba(layers.foreground, layers.mask)}
    return {name: upscale(v, target) for name, v in views.items()}


def caption_strip(panels: Sequence[np.ndarray], labels: Sequence[str], pad: int = 4) -> np.ndarray:
    """Panels of one height side by side on white, each with its label underneath (PIL's built-in font,
    so a strip draws the same on every machine, with no font file to find)."""
    h = panels[0].shape[0]
    width = sum(p.shape[1] for p in panels) + pad * (len(panels) + 1)
    canvas = Image.new("RGB", (width, h + 2 * pad + 14), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for panel, label in zip(panels, labels, strict=True):
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel[..., :3])), (x, pad))
        draw.text((x + 2, h + pad + 2), label, fill=(0, 0, 0))
        x += panel.shape[1] + pad
    return np.asarray(canvas)


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a PNG atomically (a viewer polling the file never sees half of it)."""
    import io

    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
