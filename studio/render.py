"""What the Explore tab shows, as plain functions: layers of G(z, c), Fig. 6 grids, Fig. 7 strips.

Latency is the design constraint (one slider move -> new layers in well under 150 ms on a small CPU):
* the latent code is a pure function of (seed, z offsets), so results can be cached by those numbers;
* the background depends on z only (appendix A), so a change of c reuses the cached background and
  only the foreground stage runs; (foreground, mask) are cached per (z, c) too, so the compare view's
  un-walked G(z, c) costs nothing after the first time;
* single images go through the networks at their native resolution; the live Explore views are sent
  at that size (target=None) and the browser scales them up with CSS (nearest neighbour): a 128² PNG
  encodes in a quarter of the time of its 256² upscaled copy and is a quarter of the pixels to send and
  decode. Elsewhere views are upscaled by pixel repetition (nearest), which keeps the PNGs small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from elgan import equivariance, figures
from elgan.bundle import ModelBundle
from elgan.equivariance import DIRECTIONS as DIRECTIONS  # every direction the UI offers: PerturbConfig's names
from elgan.equivariance import EPS_LIMIT, move, walk  # EPS_LIMIT: the sliders' range, what an edit accepts
from elgan.nets.generator import Layers, compose
from elgan.visualize import VIEW_PX, to_uint8, upscale
from elgan.visualize import layer_views as layer_views  # the views of one layer stack (the tabs' outputs)

from .registry import ModelRegistry, refusing

Z_DIMS = (0, 1, 2, 3, 4)  # z dimensions with their own slider; Phi shifts the first 10 (d_T)
MOVE_NAMES = {"tx": "move right", "ty": "move down", "rotation": "rotate", "scale": "grow"}  # plain words, +eps
GRID_MODES, MAX_SEED = figures.GRID_MODES, figures.MAX_SEED  # the grid modes offered; the seeds' range


def latent_code(model: ModelBundle, seed: int, z_offsets: Sequence[float] = ()) -> torch.Tensor:
    """z ~ N(0, I) drawn from `seed`, plus an offset on each of Z_DIMS: [1, z_dim]."""
    z = refusing(figures.code_from_seed)(model.generator.cfg.z_dim, seed)
    for dim, offset in zip(Z_DIMS, z_offsets, strict=False):
        z[0, dim] += float(offset)
    return z.to(next(model.generator.parameters()).device)


def eps_vector(model: ModelBundle, eps: Mapping[str, float]) -> torch.Tensor:
    """Named directions -> eps [1, d_eps] in the model's order (elgan.equivariance.eps_vector); StudioError."""
    return refusing(equivariance.eps_vector)(model.perturb, eps)


def check_category(model: ModelBundle, c: int) -> int:
    """c as an int if the model has it (elgan.equivariance.check_category); StudioError otherwise."""
    return refusing(equivariance.check_category)(model.generator, c)


@torch.inference_mode()
def render_layers(registry: ModelRegistry, key: str, seed: int, z_offsets: Sequence[float], c: int,
                  eps: Mapping[str, float] | None = None) -> Layers:
    """G(z + Phi(eps), c) for one code, [1, ...] per layer; background cached per z, foreground per (z, c)."""
    model = registry.get(key)
    c = check_category(model, c)
    e = eps_vector(model, eps or {})
    if model.phi is None:
        e = e[:, :0]
    zkey = (key, int(seed), tuple(round(float(o), 4) for o in z_offsets),
            tuple(round(v, 4) for v in e[0].tolist()))
    z = walk(model.phi, latent_code(model, seed, z_offsets), e)
    g = model.generator
    background = registry.backgrounds.get(zkey)
    if background is None:
        background = g.background(z)  # [1, 3, H, W]
        registry.backgrounds.put(zkey, background)
    fg_mask = registry.foregrounds.get((zkey, c))
    if fg_mask is None:
        cc = torch.tensor([c], device=z.device)
        fg_mask = g.foreground(z, cc, g.super_category(cc))  # ([1, 3, H, W], [1, 1, H, W])
        registry.foregrounds.put((zkey, c), fg_mask)
    foreground, mask = fg_mask
    return Layers(background, foreground, mask, compose(background, foreground, mask))


def _heat(x: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 [H, W, 3] on a black-red-yellow-white ramp (differences stand out)."""
    stops = np.array([[0, 0, 0], [180, 20, 20], [250, 200, 40], [255, 255, 255]], np.float64)
    pos = np.clip(x, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    t = (pos - i)[..., None]
    return (stops[i] * (1 - t) + stops[i + 1] * t + 0.5).astype(np.uint8)


def tile(images: Sequence[np.ndarray], pad: int = 4) -> np.ndarray:
    """Images of one height side by side on white, RGB uint8."""
    h = images[0].shape[0]
    out = np.full((h, sum(im.shape[1] for im in images) + pad * (len(images) - 1), 3), 255, np.uint8)
    x = 0
    for im in images:
        out[:, x:x + im.shape[1]] = im[..., :3]
        x += im.shape[1] + pad
    return out


@torch.inference_mode()
def compare_walk(registry: ModelRegistry, key: str, seed: int, z_offsets: Sequence[float], c: int,
                 eps: Mapping[str, float], target: int | None = VIEW_PX) -> tuple[np.ndarray, float]:
    """[G(z + Phi(eps), c) | T_eps^X G(z, c) | |difference|] side by side, and the mean abs difference.

    How well the latent walk reproduces the true transform is what the equivariance loss (eq. 8) buys;
    the difference grows outside the training range [-1, 1], as Fig. 7 notes.
    """
    model = registry.get(key)
    walked = render_layers(registry, key, seed, z_offsets, c, eps)
    base = render_layers(registry, key, seed, z_offsets, c, None)
    true = move(base, eps_vector(model, eps), model.perturb).image
    diff = (walked.image - true).abs().mean(1)[0].float().cpu().numpy() / 2  # [H, W] in [0, 1]
    panels = [to_uint8(walked.image[0]), to_uint8(true[0]), _heat(np.clip(diff * 2, 0, 1))]
    return tile([upscale(p, target) for p in panels]), float(diff.mean() * 2)


def variation_grid(registry: ModelRegistry, key: str, seed: int, c: int, mode: str = GRID_MODES[0],
                   n: int = 8) -> np.ndarray:
    """Fig. 6 of the selected model (elgan.figures.variation_grid); StudioError for a request it refuses."""
    return refusing(figures.variation_grid)(registry.get(key), seed, c, mode, n)


def direction_strip(registry: ModelRegistry, key: str, seed: int, z_offsets: Sequence[float], c: int,
                    direction: str, n: int = 9, limit: float = EPS_LIMIT,
                    with_true: bool = True) -> tuple[np.ndarray, list[float]]:
    """Fig. 7 of the selected model for the Explore tab's code (elgan.figures.direction_strip)."""
    model = registry.get(key)
    return refusing(figures.direction_strip)(model, latent_code(model, seed, z_offsets), c, direction, n, limit,
                                             with_true)
