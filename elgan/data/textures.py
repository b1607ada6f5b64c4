"""Procedural textures and palettes of the embedded synthetic dataset.

Noise is multi-octave value noise with cubic B-spline interpolation. Because a lattice sampled on an
axis-aligned pixel grid is separable, each octave is two 4-tap 1-D interpolations (rows, then columns)
instead of a per-pixel 2-D gather, which is what makes thousands of images per minute possible on a CPU.
Lattices are drawn from the scene's generator with sizes set by their frequency alone, so a scene's
texture is the same continuous function at every output resolution.

Palettes are in sRGB floats in [0, 1]. Several background palettes deliberately share hues with object
palettes (forest / green objects, sky / blue, sand and snow / cream, soil / brown, water / teal,
lavender / purple, autumn / orange) so that colour alone does not separate foreground from background.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Array = np.ndarray

_BSPLINE_VAR = 151 / 315  # mean over t of sum_i w_i(t)^2 for the cubic B-spline: variance of 1-D noise


@lru_cache(maxsize=512)
def _taps(n: int, freq: int) -> tuple[Array, Array]:
    """First lattice node [n] and cubic B-spline weights [n, 4] at pixel centres (i + 0.5) / n * freq."""
    t = (np.arange(n) + 0.5) / n * freq
    i0 = np.floor(t).astype(np.int64)
    f = t - i0
    f2, f3 = f * f, f * f * f
    w = np.stack([(1 - f) ** 3, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3], 1) / 6
    i0.setflags(write=False)
    w.setflags(write=False)
    return i0, w


def _upsample(lattice: Array, n: int, fy: int, fx: int) -> Array:
    # Four taps per axis as gathers rather than a BLAS product: with a busy CPU, multithreaded BLAS on
    # these small matrices was ~100x slower than this, and this never spawns threads.
    iy, wy = _taps(n, fy)
    ix, wx = _taps(n, fx)
    rows = sum(wy[:, k, None] * lattice[iy + k] for k in range(4))
    return sum(rows[:, ix + k] * wx[None, :, k] for k in range(4))


def fbm(rng: np.random.Generator, n: int, freq: int | tuple[int, int], octaves: int = 4,
        gain: float = 0.5) -> Array:
    """Fractal noise [n, n], zero mean and unit standard deviation in expectation (not per image, so that
    the normalisation does not depend on the resolution)."""
    fy, fx = (freq, freq) if isinstance(freq, int) else freq
    out = np.zeros((n, n))
    total = 0.0
    amp = 1.0
    for _ in range(octaves):
        lattice = rng.standard_normal((fy + 3, fx + 3))
        out += amp * _upsample(lattice, n, fy, fx)
        total += amp * amp
        amp *= gain
        fy, fx = fy * 2, fx * 2
    return out / np.sqrt(total * _BSPLINE_VAR ** 2)


def smoothstep(e0: float, e1: float, x: Array) -> Array:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def ramp(t: Array, colours: Array) -> Array:
    """Map t in [0, 1] [H, W] through evenly spaced colours [K, 3] -> [H, W, 3]."""
    knots = np.linspace(0.0, 1.0, len(colours))
    return np.stack([np.interp(t, knots, colours[:, ch]) for ch in range(3)], -1)


def _rgb(*cols: tuple[int, int, int]) -> Array:
    return np.array(cols, dtype=np.float64) / 255.0


BACKGROUND_PALETTES: tuple[Array, ...] = (
    _rgb((34, 60, 30), (70, 110, 50), (140, 160, 70), (90, 70, 40)),  # forest
    _rgb((170, 130, 90), (200, 170, 120), (225, 200, 150), (240, 225, 190)),  # sand
    _rgb((70, 120, 190), (120, 165, 215), (190, 215, 240), (230, 238, 248)),  # sky
    _rgb((60, 62, 66), (95, 95, 100), (135, 133, 130), (175, 172, 165)),  # stone
    _rgb((110, 50, 30), (150, 75, 30), (200, 125, 45), (225, 175, 80)),  # autumn
    _rgb((90, 115, 70), (110, 90, 150), (150, 130, 190), (200, 180, 220)),  # lavender field
    _rgb((20, 60, 80), (25, 95, 105), (45, 135, 140), (100, 175, 170)),  # water
    _rgb((50, 35, 25), (75, 55, 38), (105, 80, 55), (135, 105, 75)),  # soil
    _rgb((160, 170, 190), (195, 203, 218), (222, 227, 236), (242, 244, 249)),  # snow
    _rgb((70, 80, 35), (100, 100, 42), (132, 130, 62), (165, 155, 95)),  # moss
    _rgb((105, 42, 33), (140, 62, 45), (172, 92, 62), (195, 135, 105)),  # brick
    _rgb((200, 130, 130), (230, 170, 160), (242, 202, 182), (250, 228, 212)),  # peach
    _rgb((15, 16, 32), (28, 34, 62), (48, 58, 98), (80, 90, 130)),  # night
    _rgb((60, 100, 45), (95, 140, 60), (210, 200, 80), (235, 235, 225)),  # meadow
)
BACKGROUND_KINDS = ("clouds", "stripes", "blotches", "fibres", "gradient")

# (base colour, secondary colour, pattern): a palette is a coherent "species" colouring.
OBJECT_PALETTES: tuple[tuple[Array, Array, str], ...] = (
    (_rgb((200, 40, 35))[0], _rgb((245, 205, 70))[0], "spots"),  # red, yellow spots
    (_rgb((235, 130, 30))[0], _rgb((70, 40, 20))[0], "stripes"),  # orange, dark stripes
    (_rgb((235, 205, 60))[0], _rgb((130, 80, 30))[0], "spots"),  # yellow, brown spots
    (_rgb((60, 135, 50))[0], _rgb((150, 200, 90))[0], "noise"),  # green mottled (forest, moss, meadow)
    (_rgb((45, 85, 190))[0], _rgb((225, 235, 250))[0], "stripes"),  # blue, white stripes (sky)
    (_rgb((120, 55, 150))[0], _rgb((230, 145, 205))[0], "spots"),  # purple, pink spots (lavender)
    (_rgb((232, 222, 198))[0], _rgb((150, 140, 128))[0], "noise"),  # cream mottled (sand, snow)
    (_rgb((120, 75, 40))[0], _rgb((210, 180, 130))[0], "stripes"),  # brown, beige stripes (soil, sand)
    (_rgb((30, 145, 145))[0], _rgb((18, 58, 68))[0], "spots"),  # teal, dark spots (water)
    (_rgb((48, 46, 52))[0], _rgb((200, 70, 45))[0], "patches"),  # charcoal, red patches (night, brick)
)


def jitter_colours(rng: np.random.Generator, cols: Array, amount: float) -> Array:
    """Per-image colour variation: a shared brightness factor and small per-channel gains."""
    gain = np.exp(rng.normal(0.0, amount, 3)) * np.exp(rng.normal(0.0, amount))
    return np.clip(cols * gain, 0.0, 1.0)


def background(rng: np.random.Generator, n: int, palette: int, kind: int) -> Array:
    """Background [n, n, 3] in [0, 1]: a palette ramp driven by a natural-looking scalar field."""
    cols = jitter_colours(rng, BACKGROUND_PALETTES[palette], 0.08)
    if rng.random() < 0.5:
        cols = cols[::-1]
    c = (np.arange(n) + 0.5) / n
    u, v = np.meshgrid(c, c)
    angle = rng.uniform(0, 2 * np.pi)
    along = (u - 0.5) * np.cos(angle) + (v - 0.5) * np.sin(angle)
    name = BACKGROUND_KINDS[kind]
    if name == "clouds":
        t = 0.5 + 0.22 * fbm(rng, n, int(rng.integers(2, 5)), 5, 0.55)
    elif name == "stripes":
        warp = fbm(rng, n, 2, 3)
        freq = rng.uniform(3, 9)
        t = 0.5 + 0.35 * np.sin(2 * np.pi * freq * along + rng.uniform(0.5, 2.0) * warp)
        t = t + 0.1 * fbm(rng, n, 8, 2)
    elif name == "blotches":
        f = fbm(rng, n, int(rng.integers(3, 6)), 4, 0.45)
        g = fbm(rng, n, int(rng.integers(2, 4)), 3)
        t = 0.2 * smoothstep(-0.15, 0.15, f) + 0.45 * smoothstep(0.1, 0.35, g) + 0.3 * smoothstep(0.4, 0.7, f)
        t = t + 0.05 * fbm(rng, n, 12, 2)
    elif name == "fibres":
        fine = int(rng.integers(10, 20))
        coarse = int(rng.integers(1, 3))
        shape = (coarse, fine) if rng.random() < 0.5 else (fine, coarse)
        t = 0.5 + 0.2 * fbm(rng, n, shape, 3, 0.6) + 0.12 * fbm(rng, n, 3, 3)
    else:  # gradient
        t = 0.5 + 1.1 * along + 0.1 * fbm(rng, n, 3, 4)
    img = ramp(t, cols)
    shade = 1.0 + rng.uniform(0.0, 0.35) * (along if name != "gradient" else -along)
    grain = 1.0 + 0.04 * fbm(rng, n, 24, 2)
    return np.clip(img * (shade * grain)[..., None], 0.0, 1.0)


def object_pattern(rng: np.random.Generator, n: int, kind: str, lx: Array, ly: Array, scale: float) -> Array:
    """Secondary-colour weight in [0, 1], [n, n]; lx, ly are object-local coordinates, so spots and
    stripes move and turn with the object. `scale` is the object radius in image units (noise freq)."""
    if kind == "spots":
        k = int(rng.integers(4, 10))
        px, py = rng.uniform(-0.9, 0.9, k), rng.uniform(-0.9, 0.9, k)
        r = rng.uniform(0.1, 0.26, k)
        d = np.full(lx.shape, np.inf)
        for i in range(k):
            d = np.minimum(d, np.hypot(lx - px[i], ly - py[i]) - r[i])
        return 1.0 - smoothstep(-0.03, 0.03, d)
    if kind == "stripes":
        a = rng.uniform(-0.5, 0.5) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
        freq = rng.uniform(2.0, 3.5)
        s = np.sin(np.pi * freq * (lx * np.cos(a) + ly * np.sin(a)) + rng.uniform(0, 2 * np.pi))
        return smoothstep(0.1, 0.35, s)
    base = max(2, int(round(1.5 / max(scale, 0.05))))
    f = fbm(rng, n, base, 3, 0.5)
    if kind == "noise":
        return smoothstep(-1.0, 1.2, f)
    return smoothstep(0.1, 0.4, f)  # patches
