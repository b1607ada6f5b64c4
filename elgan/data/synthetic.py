"""Embedded synthetic dataset: one textured, shaded object on a natural-looking textured background,
with its exact mask, so the whole method can be trained and measured without a download.

Design choices that other code relies on:

* Every image is a pure function of (seed, split, index): its generator is
  ``np.random.default_rng([seed, split_id, index, _SALT])``, so splits never share a random stream and
  the first k images of an n-image set are the k-image set.
* Scene parameters (shape, pose, colours, noise lattices) are drawn independently of the resolution, so
  the same scene appears at 32, 64 and 128 px. The silhouette is sampled ``_supersample(size)``^2 times
  per pixel (4x4 at <= 32 px, else 2x2); its coverage anti-aliases the composite and
  ``mask = coverage > 0.5``. Colours are smooth, so they are sampled once per pixel.
* The object is fully inside the frame (3% margin); its area is uniform in [10%, 45%] of the image
  (lower only when an elongated, rotated shape cannot fit at the drawn area). Rotation is within
  +-45 degrees of the family's upright pose, with a random mirror.
* ``category = family * N_PALETTES + palette``: 20 shape families x 10 object palettes = 200 classes,
  matching ``GeneratorConfig(n_categories=200, group_size=10)`` so c_sup is the shape family.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from elgan.data.shapes import N_FAMILIES, sample_shape, shape_field
from elgan.data.textures import (
    BACKGROUND_KINDS,
    BACKGROUND_PALETTES,
    OBJECT_PALETTES,
    background,
    fbm,
    jitter_colours,
    object_pattern,
)

__all__ = ["SPLITS", "DEFAULT_COUNTS", "N_FAMILIES", "N_PALETTES", "N_CATEGORIES", "GENERATOR_VERSION",
           "AREA_RANGE", "render_synthetic", "generate_synthetic", "load_synthetic", "cache_path",
           "default_cache_dir"]

SPLITS = ("train", "val", "test")
DEFAULT_COUNTS = {"train": 8000, "val": 500, "test": 1000}
N_PALETTES = len(OBJECT_PALETTES)
N_CATEGORIES = N_FAMILIES * N_PALETTES
GENERATOR_VERSION = 2  # bump on any change that alters a rendered pixel: it is part of the cache key
AREA_RANGE = (0.10, 0.45)  # object area as a fraction of the image
MARGIN = 0.03  # minimal gap between the object and the image border, in image widths
ENV_VAR = "ELGAN_DATA_DIR"

_SALT = 0x5E6A  # keeps these streams apart from any other use of default_rng([seed, ...])
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
_MEASURE = np.linspace(-1.6, 1.6, 97)  # fixed local grid that measures a shape's area and extent


def _supersample(size: int) -> int:
    return 4 if size <= 32 else 2


def _check_args(split: str, size: int) -> None:
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(size, int | np.integer) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")


def _rng(split: str, index: int, seed: int) -> np.random.Generator:
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    return np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), _SALT])


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Approximate Gaussian blur (three box passes per axis via cumulative sums), zero outside the image.

    BLAS-free on purpose: matrix products spawn threads that thrash on a shared CPU.
    """
    r = max(1, int(round((np.sqrt(4 * sigma * sigma + 1) - 1) / 2)))  # 3 boxes of 2r+1: var (w^2-1)/4
    for axis in (0, 1):
        for _ in range(3):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (r + 1, r)
            c = np.cumsum(np.pad(a, pad), axis=axis)
            hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
            lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
            a = (hi - lo) / (2 * r + 1)
    return a


def _place(rng: np.random.Generator, family: int, params: dict, mirror: bool, angle: float
           ) -> tuple[float, float, float]:
    """Scale s (image widths per local unit) and centre (cx, cy) for the drawn area, inside the frame."""
    gx, gy = np.meshgrid(_MEASURE, _MEASURE)
    inside = shape_field(family, params, gx, gy) < 0
    cell = (_MEASURE[1] - _MEASURE[0]) ** 2
    area = inside.sum() * cell
    px, py = gx[inside], gy[inside]
    lx = -px if mirror else px
    c, s_ = np.cos(angle), np.sin(angle)
    dx, dy = c * lx - s_ * py, s_ * lx + c * py  # image-aligned offsets, y up, at unit scale
    half = (_MEASURE[1] - _MEASURE[0]) / 2
    x0, x1, y0, y1 = dx.min() - half, dx.max() + half, dy.min() - half, dy.max() + half
    s_fit = (1 - 2 * MARGIN) / max(x1 - x0, y1 - y0)
    hi = min(AREA_RANGE[1], area * s_fit ** 2)
    target = rng.uniform(AREA_RANGE[0], hi) if hi > AREA_RANGE[0] else hi
    scale = float(np.sqrt(target / area))
    cx = rng.uniform(MARGIN - scale * x0, 1 - MARGIN - scale * x1)
    cy = rng.uniform(MARGIN + scale * y1, 1 - MARGIN + scale * y0)  # image y points down
    return scale, float(cx), float(cy)


def _local_coords(n: int, scale: float, cx: float, cy: float, angle: float, mirror: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Object-frame coordinates (x right, y up, unit = shape units) of the centres of an n x n grid."""
    coord = (np.arange(n) + 0.5) / n
    du, dv = coord[None, :] - cx, cy - coord[:, None]
    c, s_ = np.cos(angle), np.sin(angle)
    lx, ly = (c * du + s_ * dv) / scale, (-s_ * du + c * dv) / scale
    return (-lx if mirror else lx), ly


def render_synthetic(split: str, index: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """image uint8 [H, W, 3], mask uint8 [H, W] in {0, 1} (1 = foreground), category int.

    All random draws happen in a fixed order and with resolution-independent shapes, so (split, index,
    seed) is one scene whatever ``size`` is.
    """
    _check_args(split, size)
    rng = _rng(split, index, seed)
    family = int(rng.integers(N_FAMILIES))
    palette = int(rng.integers(N_PALETTES))
    params = sample_shape(family, rng)
    mirror = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-np.pi / 4, np.pi / 4))
    scale, cx, cy = _place(rng, family, params, mirror, angle)

    bg = background(rng, size, int(rng.integers(len(BACKGROUND_PALETTES))),
                    int(rng.integers(len(BACKGROUND_KINDS))))

    # The silhouette is sampled ss x ss times per pixel (coverage); colours, which are smooth, once.
    ss = _supersample(size)
    sx, sy = _local_coords(size * ss, scale, cx, cy, angle, mirror)
    inside = shape_field(family, params, sx, sy) < 0
    cover = inside.reshape(size, ss, size, ss).mean((1, 3))
    lx, ly = _local_coords(size, scale, cx, cy, angle, mirror)

    # Appearance: two-colour pattern in the object's frame, mottling, and a fake-relief shading whose
    # normals come from the blurred silhouette, lit from a random direction.
    base, second, pattern = OBJECT_PALETTES[palette]
    cols = jitter_colours(rng, np.stack([base, second]), 0.1)
    w = object_pattern(rng, size, pattern, lx, ly, scale) * rng.uniform(0.6, 1.0)
    fg = cols[0] * (1 - w[..., None]) + cols[1] * w[..., None]
    fg = fg * (1.0 + 0.06 * fbm(rng, size, 16, 2))[..., None]
    sigma = 0.2 * scale
    h = _blur(cover, sigma * size)
    hy, hx = np.gradient(h, 1.0 / size)
    k = 2.5 * sigma
    light_a, light_e = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0)
    lvec = np.array([np.cos(light_a) * np.sin(light_e), np.sin(light_a) * np.sin(light_e), np.cos(light_e)])
    nx, ny = -k * hx, -k * hy
    lambert = np.clip((nx * lvec[0] + ny * lvec[1] + lvec[2]) / np.sqrt(nx * nx + ny * ny + 1), 0.0, 1.0)
    shade = 0.35 + 0.75 * lambert
    spec = rng.uniform(0.0, 0.25) * lambert ** 12
    fg = fg * shade[..., None] + spec[..., None]

    img = cover[..., None] * fg + (1 - cover[..., None]) * bg
    image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    mask = (cover > 0.5).astype(np.uint8)
    return image, mask, family * N_PALETTES + palette


def _render_range(args: tuple[str, int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split, size, seed, n, start = args
    return generate_synthetic(split, size, seed, n, start)


def generate_synthetic(split: str, size: int, seed: int = 0, n: int | None = None, start: int = 0,
                       progress: bool = False, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images [N, 3, H, W] uint8, masks [N, 1, H, W] uint8, categories [N] int64 for indices start.. .

    Image i depends only on (split, i, size, seed), so `workers` processes render contiguous ranges and
    the result is the same array as with one (a 128 px training set: ~100 s on one core)."""
    _check_args(split, size)
    n = DEFAULT_COUNTS[split] if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor

        edges = np.linspace(0, n, min(workers, n) * 4 + 1).astype(int)  # a few ranges per worker: balance
        ranges = [(split, size, seed, int(b - a), start + int(a))
                  for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(min(workers, n)) as pool:
            parts = list(pool.map(_render_range, ranges))
        if progress:
            print(f"synthetic {split} {size}px: {n}/{n} ({n / max(time.perf_counter() - t0, 1e-9):.0f} img/s, "
                  f"{workers} workers)", file=sys.stderr, flush=True)
        return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))  # type: ignore[return-value]
    images = np.empty((n, 3, size, size), np.uint8)
    masks = np.empty((n, 1, size, size), np.uint8)
    cats = np.empty(n, np.int64)
    t0 = time.perf_counter()
    for i in range(n):
        im, m, c = render_synthetic(split, start + i, size, seed)
        images[i], masks[i, 0], cats[i] = im.transpose(2, 0, 1), m, c
        if progress and ((i + 1) % 500 == 0 or i + 1 == n):
            rate = (i + 1) / max(time.perf_counter() - t0, 1e-9)
            print(f"synthetic {split} {size}px: {i + 1}/{n} ({rate:.0f} img/s)", file=sys.stderr, flush=True)
    return images, masks, cats


def default_cache_dir() -> Path:
    """$ELGAN_DATA_DIR if set, else <repo>/data/synthetic (git-ignored)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "synthetic"


def cache_path(split: str, size: int, seed: int, n: int, cache_dir: str | os.PathLike | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"synthetic_v{GENERATOR_VERSION}_{split}_{size}px_seed{seed}_n{n}.npz"


def _read(path: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as z:
            out = z["images"][:n], z["masks"][:n], z["categories"][:n]
    except (OSError, KeyError, ValueError, EOFError):
        return None  # a corrupt or foreign file is regenerated, never trusted
    return out if len(out[0]) == n else None


def load_synthetic(split: str, size: int, seed: int = 0, n: int | None = None,
                   cache_dir: str | os.PathLike | None = None, progress: bool = False, workers: int = 1
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images uint8 [N, 3, H, W], masks uint8 [N, 1, H, W] in {0, 1}, categories int64 [N].

    Cached as .npz keyed by (version, split, size, seed, n); a cached larger set of the same key is sliced
    instead of regenerating, since image i does not depend on n. Writes are atomic (tmp + os.replace), so
    concurrent runs at worst both generate and one wins.
    """
    _check_args(split, size)
    n = DEFAULT_COUNTS[split] if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    path = cache_path(split, size, seed, n, cache_dir)
    arrays = _read(path, n) if path.exists() else None
    if arrays is None:
        prefix = f"synthetic_v{GENERATOR_VERSION}_{split}_{size}px_seed{seed}_n"
        for other in sorted(path.parent.glob(prefix + "*.npz")) if path.parent.is_dir() else []:
            suffix = other.name[len(prefix):-4]
            if suffix.isdigit() and int(suffix) > n:
                arrays = _read(other, n)
                if arrays is not None:
                    break
    if arrays is None:
        arrays = generate_synthetic(split, size, seed, n, progress=progress, workers=workers)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, images=arrays[0], masks=arrays[1], categories=arrays[2])
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    images, masks, cats = arrays
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.ascontiguousarray(masks)), \
        torch.from_numpy(np.ascontiguousarray(cats))
