"""Batched augmentations of float images [N, 3, H, W] in [-1, 1], on any device.

* :func:`random_hflip` and :func:`random_resized_crop` augment the real images (appendix A of the
  paper: RandomResizedCrop, horizontal flips). The crop is drawn with torchvision's RandomResizedCrop
  rule per image, then the whole batch is resampled by one ``affine_grid`` + ``grid_sample`` call instead
  of a Python loop over PIL images.
* :func:`diff_augment` is DiffAugment (Zhao et al., 2020): the same random, differentiable transforms
  are applied to real and fake images before D, so D cannot overfit a small dataset while G still gets
  gradients through them. Written from the paper's description: colour (brightness, saturation,
  contrast), translation by up to 1/8 of the side with zero padding, cutout of a half-side square.

Every random draw comes from the optional ``torch.Generator`` (drawn on the generator's device, then
moved), so a seeded generator gives the same augmentation on CPU and GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    dev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=dev).to(device)


def _randint(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    dev = generator.device if generator is not None else device
    return torch.randint(low, high, shape, generator=generator, device=dev).to(device)


def _check(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected a batch [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a float tensor, got {x.dtype}")


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability p."""
    _check(x)
    flip = _rand((x.shape[0],), generator, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _crop_boxes(n: int, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(top, left, height, width) per image by torchvision's rule: 10 tries, else a centre crop."""
    area = h * w
    u = _rand((n, 10), generator, device).double()
    v = _rand((n, 10), generator, device).double()
    target = area * (scale[0] + (scale[1] - scale[0]) * u)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * v)
    cw = torch.round(torch.sqrt(target * aspect))
    ch = torch.round(torch.sqrt(target / aspect))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)  # index of the first successful try
    found = ok.any(1)
    cw, ch = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]
    # Fallback of torchvision: the whole image, cut to the nearest allowed aspect ratio, centred.
    in_ratio = w / h
    if in_ratio < min(ratio):
        fw, fh = w, round(w / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(h * max(ratio)), h
    else:
        fw, fh = w, h
    cw = torch.where(found, cw, torch.full_like(cw, fw))
    ch = torch.where(found, ch, torch.full_like(ch, fh))
    r = _rand((n, 2), generator, device).double()
    top = torch.floor(r[:, 0] * (h - ch + 1)).clamp(max=h - ch)
    left = torch.floor(r[:, 1] * (w - cw + 1)).clamp(max=w - cw)
    top = torch.where(found, top, torch.floor((h - ch) / 2))
    left = torch.where(found, left, torch.floor((w - cw) / 2))
    return top, left, ch, cw


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.8, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's RandomResizedCrop per image, resized back to the input size (bilinear)."""
    _check(x)
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"need 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
    n, _, h, w = x.shape
    top, left, ch, cw = _crop_boxes(n, h, w, scale, ratio, generator, x.device)
    # align_corners=False: normalised -1/+1 are the outer pixel edges, so the crop [left, left + cw) maps
    # to a centre (2 left + cw) / w - 1 and a half-width cw / w.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
    theta[:, 0, 0] = cw / w
    theta[:, 0, 2] = (2 * left + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * top + ch) / h - 1
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _color(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    n = x.shape[0]
    x = x + (_rand((n, 1, 1, 1), g, x.device).to(x.dtype) - 0.5)  # brightness: shift by U[-0.5, 0.5]
    mean = x.mean(dim=1, keepdim=True)  # saturation: scale the chroma by U[0, 2]
    x = (x - mean) * (_rand((n, 1, 1, 1), g, x.device).to(x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # contrast: scale around the image mean by U[0.5, 1.5]
    return (x - mean) * (_rand((n, 1, 1, 1), g, x.device).to(x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = _randint(-sh, sh + 1, (n,), g, x.device)
    tx = _randint(-sw, sw + 1, (n,), g, x.device)
    padded = F.pad(x, [sw, sw, sh, sh])  # zeros outside: content moves in from a blank border
    gy = torch.arange(h, device=x.device)[None, :] - ty[:, None] + sh  # output row y reads row y - ty
    gx = torch.arange(w, device=x.device)[None, :] - tx[:, None] + sw
    idx = torch.arange(n, device=x.device)[:, None, None]
    out = padded[idx, :, gy[:, :, None], gx[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def _cutout(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _randint(0, h + (1 - ch % 2), (n,), g, x.device)  # centre anywhere, square may leave the image
    cx = _randint(0, w + (1 - cw % 2), (n,), g, x.device)
    y0, x0 = cy - ch // 2, cx - cw // 2
    ys, xs = torch.arange(h, device=x.device)[None], torch.arange(w, device=x.device)[None]
    in_y = (ys >= y0[:, None]) & (ys < y0[:, None] + ch)
    in_x = (xs >= x0[:, None]) & (xs < x0[:, None] + cw)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); "" or "none" -> (); unknown names -> ValueError."""
    names = tuple(p.strip().lower() for p in (policy or "").split(",") if p.strip())
    if names == ("none",):
        return ()
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {bad[0]!r}: use a comma-separated subset of {POLICIES}")
    return names


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment with a comma-separated policy, applied in the given order; differentiable in x."""
    _check(x)
    for name in parse_policy(policy):
        x = _OPS[name](x, generator)
    return x.contiguous()


PAIR_CROP_SCALE = (0.5, 1.0)  # the U-Net pairs' RandomResizedCrop scale range


def augment_pairs(images: torch.Tensor, masks: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Segmentation pairs, images [N, 3, H, W] in [-1, 1] and masks [N, 1, H, W] in [0, 1], augmented so a
    U-Net cannot lean on the generator's exact framing and colours: one flip and one random resized crop
    (scale 0.5-1) shared by each image and its mask, then DiffAugment's colour jitter on the image alone."""
    _check(images)
    _check(masks)
    if images.shape[0] != masks.shape[0] or images.shape[2:] != masks.shape[2:]:
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} do not pair up")
    both = torch.cat([images, masks.to(images.dtype)], 1)  # [N, 4, H, W]: one geometry for both
    both = random_resized_crop(random_hflip(both, generator), PAIR_CROP_SCALE, generator=generator)
    x, m = both[:, :3], both[:, 3:]
    return _color(x, generator).clamp(-1, 1), m.clamp(0, 1)
