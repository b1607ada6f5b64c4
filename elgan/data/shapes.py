"""Twenty families of smooth, hole-free object silhouettes for the embedded synthetic dataset.

Each family is a pair (parameter sampler, implicit function). The implicit function is negative inside
the shape and is evaluated in a local frame where the shape spans roughly [-1.3, 1.3]^2; the scene code
rescales it to a target image area, so the absolute size here does not matter. Most functions are (close
to) signed distances built from Inigo Quilez's 2-D primitives, because smooth unions and corner rounding
need distances; only the sign is used for the mask. Parameters are drawn from the scene's generator
only, never from the output resolution, so one scene renders identically at every size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray
Params = dict[str, float | Array]


# ---------------------------------------------------------------- primitives (distance functions)

def _circle(x: Array, y: Array, cx: float, cy: float, r: float) -> Array:
    return np.hypot(x - cx, y - cy) - r


def _ellipse(x: Array, y: Array, a: float, b: float) -> Array:
    # Scaled-circle approximation: exact sign, distance off by at most the aspect ratio.
    return (np.hypot(x / a, y / b) - 1.0) * min(a, b)


def _box(x: Array, y: Array, bx: float, by: float, r: float) -> Array:
    qx, qy = np.abs(x) - bx + r, np.abs(y) - by + r
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


def _segment(x: Array, y: Array, ax: float, ay: float, bx: float, by: float, r: float) -> Array:
    px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
    h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(px - h * dx, py - h * dy) - r


def _polygon(x: Array, y: Array, r: float, n: int) -> Array:
    """Regular n-gon with circumradius r, one vertex up."""
    an = np.pi / n
    bn = np.mod(np.arctan2(x, y), 2 * an) - an
    rho = np.hypot(x, y)
    px, py = rho * np.cos(bn) - r * np.cos(an), rho * np.abs(np.sin(bn)) - r * np.sin(an)
    py = py + np.clip(-py, 0.0, r * np.sin(an))
    return np.hypot(px, py) * np.sign(px)


def _uneven_capsule(x: Array, y: Array, r1: float, r2: float, h: float) -> Array:
    """Convex hull of a circle r1 at the origin and a circle r2 at (0, h)."""
    x = np.abs(x)
    b = (r1 - r2) / h
    a = np.sqrt(1 - b * b)
    k = -b * x + a * y
    return np.where(k < 0, np.hypot(x, y) - r1,
                    np.where(k > a * h, np.hypot(x, y - h) - r2, a * x + b * y - r1))


def _heart(x: Array, y: Array) -> Array:
    """Heart with its tip at the origin and lobes near y = 1."""
    x = np.abs(x)
    upper = np.hypot(x - 0.25, y - 0.75) - np.sqrt(2) / 4
    d1 = (x - 0.0) ** 2 + (y - 1.0) ** 2
    m = 0.5 * np.maximum(x + y, 0.0)
    d2 = (x - m) ** 2 + (y - m) ** 2
    lower = np.sqrt(np.minimum(d1, d2)) * np.sign(x - y)
    return np.where(x + y > 1.0, upper, lower)


def _smin(a: Array, b: Array, k: float) -> Array:
    """Smooth union: fills the concave creases where two parts meet."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def _smax(a: Array, b: Array, k: float) -> Array:
    """Smooth intersection: blunts the sharp convex corners a plain max would leave (crescent horns)."""
    return -_smin(-a, -b, k)


def _polar(x: Array, y: Array, radius: Callable[[Array], Array]) -> Array:
    """Star-shaped region rho < radius(theta); star-shaped regions can never have holes."""
    return np.hypot(x, y) - radius(np.arctan2(y, x))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------- families

def _superellipse(rng: np.random.Generator) -> Params:
    return {"p": _u(rng, 1.7, 4.5), "a": 1.0, "b": _u(rng, 0.55, 1.0)}


def _superellipse_f(x: Array, y: Array, q: Params) -> Array:
    p = q["p"]
    return (np.abs(x / q["a"]) ** p + np.abs(y / q["b"]) ** p) ** (1 / p) - 1.0


def _fourier(rng: np.random.Generator) -> Params:
    k = np.arange(2, 6)
    return {"amp": rng.uniform(0.3, 1.0, 4) * 0.32 / k ** 0.9, "phase": rng.uniform(0, 2 * np.pi, 4)}


def _fourier_f(x: Array, y: Array, q: Params) -> Array:
    def radius(t: Array) -> Array:
        r = 1.0 + sum(q["amp"][i] * np.cos((i + 2) * t + q["phase"][i]) for i in range(4))
        return np.maximum(r, 0.45)
    return _polar(x, y, radius)


def _star(rng: np.random.Generator) -> Params:
    return {"n": float(rng.integers(4, 7)), "inner": _u(rng, 0.45, 0.6), "p": _u(rng, 1.0, 1.8)}


def _star_f(x: Array, y: Array, q: Params) -> Array:
    def radius(t: Array) -> Array:
        return q["inner"] + (1 - q["inner"]) * ((1 + np.cos(q["n"] * t + np.pi / 2)) / 2) ** q["p"]
    return _polar(x, y, radius)


def _heart_p(rng: np.random.Generator) -> Params:
    return {"w": _u(rng, 0.9, 1.2), "round": _u(rng, 0.02, 0.06)}


def _heart_f(x: Array, y: Array, q: Params) -> Array:
    return _heart(x / q["w"], -(y - 0.55)) - q["round"]


def _crescent(rng: np.random.Generator) -> Params:
    return {"d": _u(rng, 0.5, 0.7), "rb": _u(rng, 0.75, 0.88), "k": _u(rng, 0.2, 0.3)}


def _crescent_f(x: Array, y: Array, q: Params) -> Array:
    # d + rb > 1 keeps the bite open (no hole); the smooth intersection blunts the horns so that they
    # never thin out into disconnected pixels.
    return _smax(_circle(x, y, 0, 0, 1.0), -_circle(x, y, q["d"], 0, q["rb"]), q["k"])


def _teardrop(rng: np.random.Generator) -> Params:
    return {"r1": _u(rng, 0.5, 0.62), "r2": _u(rng, 0.06, 0.16), "h": _u(rng, 0.9, 1.2)}


def _teardrop_f(x: Array, y: Array, q: Params) -> Array:
    return _uneven_capsule(x, y + 0.4, q["r1"], q["r2"], q["h"])


def _cross(rng: np.random.Generator) -> Params:
    return {"l": _u(rng, 0.85, 1.05), "w": _u(rng, 0.3, 0.42), "r": _u(rng, 0.08, 0.2)}


def _cross_f(x: Array, y: Array, q: Params) -> Array:
    return _smin(_box(x, y, q["l"], q["w"], q["r"]), _box(x, y, q["w"], q["l"], q["r"]), 0.15)


def _leaf(rng: np.random.Generator) -> Params:
    return {"w": _u(rng, 0.4, 0.55), "bend": _u(rng, -0.3, 0.3), "round": _u(rng, 0.03, 0.08)}


def _leaf_f(x: Array, y: Array, q: Params) -> Array:
    # Vesica (lens) of half-width w and half-height 1, points up and down, bent by a quadratic shear.
    w = q["w"]
    c = (1 / w - w) / 2
    x = x - q["bend"] * (y * y - 0.5)
    lens = np.maximum(_circle(x, y, -c, 0, c + w), _circle(x, y, c, 0, c + w))
    return lens + q["round"]


def _fish(rng: np.random.Generator) -> Params:
    return {"b": _u(rng, 0.38, 0.55), "tail": _u(rng, 0.35, 0.55), "k": _u(rng, 0.08, 0.15)}


def _fish_f(x: Array, y: Array, q: Params) -> Array:
    body = _ellipse(x - 0.3, y, 0.85, q["b"])
    t = q["tail"]
    # Convex triangle as a max of half-planes: exact inside, which is all the mask needs.
    e1 = (-x - 1.05) / 1.0
    # The tail's apex sits well inside the body, so the joint is never a thin neck.
    e2 = (t * (x + 0.2) + 0.85 * y) / np.hypot(t, 0.85)
    e3 = (t * (x + 0.2) - 0.85 * y) / np.hypot(t, 0.85)
    tail = _smax(_smax(e1, e2, 0.12), e3, 0.12)  # blunt corners: no one-pixel fin tips
    return _smin(body, tail, q["k"])


def _peanut(rng: np.random.Generator) -> Params:
    r1, r2 = _u(rng, 0.45, 0.6), _u(rng, 0.4, 0.55)
    # Centres 2d apart with 2d < 0.8 (r1 + r2): the lobes overlap, so the waist never pinches off.
    return {"d": (r1 + r2) / 2 * _u(rng, 0.6, 0.8), "r1": r1, "r2": r2, "k": _u(rng, 0.15, 0.3)}


def _peanut_f(x: Array, y: Array, q: Params) -> Array:
    return _smin(_circle(x, y, -q["d"], 0, q["r1"]), _circle(x, y, q["d"], 0, q["r2"]), q["k"])


def _triangle(rng: np.random.Generator) -> Params:
    return {"r": _u(rng, 0.12, 0.25), "stretch": _u(rng, 0.8, 1.25)}


def _triangle_f(x: Array, y: Array, q: Params) -> Array:
    return _polygon(x / q["stretch"], y + 0.2, 1.1 - q["r"], 3) - q["r"]


def _capsule(rng: np.random.Generator) -> Params:
    return {"l": _u(rng, 0.35, 0.7), "r": _u(rng, 0.32, 0.45), "bend": _u(rng, -0.4, 0.4)}


def _capsule_f(x: Array, y: Array, q: Params) -> Array:
    y = y - q["bend"] * (x * x - 0.3)
    return _segment(x, y, -q["l"], 0, q["l"], 0, q["r"])


def _egg(rng: np.random.Generator) -> Params:
    return {"a": _u(rng, 0.65, 0.85), "k": _u(rng, 0.15, 0.3)}


def _egg_f(x: Array, y: Array, q: Params) -> Array:
    width = q["a"] * (1 - q["k"] * y)
    return (np.hypot(x / width, y) - 1.0) * 0.7


def _flower(rng: np.random.Generator) -> Params:
    return {"n": float(rng.integers(5, 8)), "depth": _u(rng, 0.22, 0.35), "phase": _u(rng, 0, np.pi)}


def _flower_f(x: Array, y: Array, q: Params) -> Array:
    def radius(t: Array) -> Array:
        # |cos| gives round petals with V-shaped notches; shallow enough not to pinch off background.
        return 1.0 - q["depth"] + q["depth"] * np.abs(np.cos(q["n"] * t / 2 + q["phase"]))
    return _polar(x, y, radius)


def _polygon_p(rng: np.random.Generator) -> Params:
    return {"n": float(rng.choice([4, 5, 6, 8])), "r": _u(rng, 0.08, 0.22), "stretch": _u(rng, 0.75, 1.0)}


def _polygon_f(x: Array, y: Array, q: Params) -> Array:
    return _polygon(x, y / q["stretch"], 1.0 - q["r"], int(q["n"])) - q["r"]


def _kidney(rng: np.random.Generator) -> Params:
    return {"b": _u(rng, 0.55, 0.7), "rc": _u(rng, 0.4, 0.55), "depth": _u(rng, 0.35, 0.6)}


def _kidney_f(x: Array, y: Array, q: Params) -> Array:
    cy = q["b"] + q["rc"] * (1 - q["depth"])
    return _smax(_ellipse(x, y, 1.0, q["b"]), -_circle(x, y, 0, cy, q["rc"]), 0.2)


def _clover(rng: np.random.Generator) -> Params:
    return {"n": float(rng.integers(3, 5)), "d": _u(rng, 0.45, 0.55), "r": _u(rng, 0.38, 0.48)}


def _clover_f(x: Array, y: Array, q: Params) -> Array:
    n = int(q["n"])
    f = _circle(x, y, 0, 0, 0.4)
    for i in range(n):
        a = np.pi / 2 + 2 * np.pi * i / n
        f = _smin(f, _circle(x, y, q["d"] * np.cos(a), q["d"] * np.sin(a), q["r"]), 0.2)
    return f


def _mushroom(rng: np.random.Generator) -> Params:
    return {"cap": _u(rng, 0.5, 0.7), "stem": _u(rng, 0.22, 0.32), "h": _u(rng, 0.55, 0.8)}


def _mushroom_f(x: Array, y: Array, q: Params) -> Array:
    cap = np.maximum(_ellipse(x, y, 1.0, q["cap"]), -y - 0.05)
    stem = _box(x, y + q["h"] / 2, q["stem"], q["h"] / 2 + 0.1, 0.1)
    return _smin(cap + 0.06, stem, 0.12) - 0.06


def _bone(rng: np.random.Generator) -> Params:
    return {"l": _u(rng, 0.55, 0.75), "w": _u(rng, 0.24, 0.32), "k": _u(rng, 0.3, 0.38)}


def _bone_f(x: Array, y: Array, q: Params) -> Array:
    f = _segment(x, y, -q["l"], 0, q["l"], 0, q["w"])
    for sx in (-1, 1):
        for sy in (-1, 1):
            f = _smin(f, _circle(x, y, sx * q["l"], sy * q["k"] * 0.75, q["k"]), 0.12)
    return f


def _cloud(rng: np.random.Generator) -> Params:
    n = 5
    return {"cx": np.linspace(-0.75, 0.75, n) + rng.uniform(-0.08, 0.08, n),
            "cy": rng.uniform(-0.05, 0.3, n) * np.array([0.3, 0.8, 1.0, 0.8, 0.3]),
            "r": rng.uniform(0.3, 0.42, n) * np.array([0.8, 1.0, 1.15, 1.0, 0.8])}


def _cloud_f(x: Array, y: Array, q: Params) -> Array:
    f = _box(x, y + 0.15, 0.9, 0.2, 0.18)
    for cx, cy, r in zip(q["cx"], q["cy"], q["r"], strict=True):
        f = _smin(f, _circle(x, y, float(cx), float(cy), float(r)), 0.15)
    return f


FAMILIES: tuple[tuple[str, Callable[[np.random.Generator], Params], Callable[[Array, Array, Params], Array]],
                ...] = (
    ("superellipse", _superellipse, _superellipse_f),
    ("blob", _fourier, _fourier_f),
    ("star", _star, _star_f),
    ("heart", _heart_p, _heart_f),
    ("crescent", _crescent, _crescent_f),
    ("teardrop", _teardrop, _teardrop_f),
    ("cross", _cross, _cross_f),
    ("leaf", _leaf, _leaf_f),
    ("fish", _fish, _fish_f),
    ("peanut", _peanut, _peanut_f),
    ("triangle", _triangle, _triangle_f),
    ("capsule", _capsule, _capsule_f),
    ("egg", _egg, _egg_f),
    ("flower", _flower, _flower_f),
    ("polygon", _polygon_p, _polygon_f),
    ("kidney", _kidney, _kidney_f),
    ("clover", _clover, _clover_f),
    ("mushroom", _mushroom, _mushroom_f),
    ("bone", _bone, _bone_f),
    ("cloud", _cloud, _cloud_f),
)
FAMILY_NAMES = tuple(name for name, _, _ in FAMILIES)
N_FAMILIES = len(FAMILIES)


def sample_shape(family: int, rng: np.random.Generator) -> Params:
    return FAMILIES[family][1](rng)


def shape_field(family: int, params: Params, x: Array, y: Array) -> Array:
    """Implicit function of the silhouette at local coordinates (x right, y up); < 0 inside."""
    return FAMILIES[family][2](x, y, params)
