"""The paper's figures of a trained generator, as arrays: Fig. 6 (what z, c and c_sup each control) and
Fig. 7 (the latent walk along one direction, with the true layer move under it).

One home for both front ends: the app's Explore tab shows them live, ``python -m training.figures``
writes them for a model card or the README. Refusals (an unknown grid mode, a direction the model was
trained without, a frame count out of range) are EditErrors, worded for the person who asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .equivariance import EPS_LIMIT, EditError, check_category, move, walk
from .visualize import grid, layer_rows, to_uint8

if TYPE_CHECKING:  # annotations only: the bundle module pulls in every network
    from .bundle import ModelBundle

GRID_MODES = ("vary z, fix c", "vary c within c_sup, fix z", "vary c_sup, fix z")
MAX_SEED = 2**31 - 1  # seeds of latent codes: torch.Generator().manual_seed(seed)


def code_from_seed(z_dim: int, seed: int) -> torch.Tensor:
    """z ~ N(0, I) drawn from `seed`: [1, z_dim] (the same seed gives the same code everywhere)."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise EditError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    return torch.randn(1, z_dim, generator=torch.Generator().manual_seed(int(seed)))


def _scale(model: ModelBundle) -> int:
    return max(1, 128 // model.generator.cfg.size)  # figures drawn at about 128 px per tile


@torch.inference_mode()
def variation_grid(model: ModelBundle, seed: int, c: int, mode: str = GRID_MODES[0], n: int = 8) -> np.ndarray:
    """Fig. 6: rows background | foreground | mask | image over n samples where only z or only c varies.

    Varying c leaves the background row unchanged (G_b sees z only); varying c within its super-category
    keeps the mask's shape (G_f^pi sees c_sup only) and changes appearance.
    """
    g = model.generator
    c = check_category(g, c)
    if mode not in GRID_MODES:
        raise EditError(f"grid mode must be one of {GRID_MODES}, got {mode!r}")
    if not 1 <= n <= 16:
        raise EditError(f"grid size must be in [1, 16], got {n}")
    device = next(g.parameters()).device
    if mode == GRID_MODES[0]:
        z = torch.cat([code_from_seed(g.cfg.z_dim, (int(seed) + k) % (MAX_SEED + 1)) for k in range(n)])
        cs = [c] * n
    else:
        z = code_from_seed(g.cfg.z_dim, seed).expand(n, -1)
        sup, sub = g.super_category(c), g.index_in_group(c)
        if mode == GRID_MODES[1]:
            cs = [g.category(sup, (sub + k) % g.cfg.group_size) for k in range(n)]
        else:
            cs = [g.category((sup + k) % g.cfg.n_super, sub) for k in range(n)]
    layers = g(z.to(device), torch.tensor(cs, device=device))
    return grid(layer_rows(layers), scale=_scale(model))


@torch.inference_mode()
def direction_strip(model: ModelBundle, z: torch.Tensor, c: int, direction: str, n: int = 9,
                    limit: float = EPS_LIMIT, with_true: bool = True) -> tuple[np.ndarray, list[float]]:
    """Fig. 7: G(z + Phi(t e_dir), c) for t in linspace(-limit, limit, n) (and T^X G(z, c) below it),
    for one code z [1, z_dim]. A bar under each frame marks the training range: green for |t| <= 1,
    grey outside it, where the walk extrapolates."""
    g = model.generator
    c = check_category(g, c)
    if model.phi is None:
        raise EditError("this model has no Phi (latent walk); strips need one")
    if direction not in model.perturb.eps_names:
        raise EditError(f"this model was trained without the {direction!r} direction "
                        f"(it has: {', '.join(model.perturb.eps_names) or 'none'})")
    if not 2 <= n <= 16 or not 0 < limit <= EPS_LIMIT:
        raise EditError(f"need 2 <= n <= 16 frames and 0 < limit <= {EPS_LIMIT:g}")
    ts = np.linspace(-limit, limit, n).tolist()
    device = next(g.parameters()).device
    eps = torch.zeros(n, model.perturb.eps_dim, device=device)
    eps[:, model.perturb.eps_names.index(direction)] = torch.tensor(ts, device=device)
    zz = z.to(device).expand(n, -1)
    cc = torch.full((n,), c, device=device)
    rows = [to_uint8(g(walk(model.phi, zz, eps), cc).image)]  # [n, H, W, 3]
    if with_true:
        base = g(zz[:1], cc[:1])
        rows.append(to_uint8(move(base, eps, model.perturb).image))
    scale, size, pad = _scale(model), g.cfg.size, 2
    strip = grid(rows, pad=pad, scale=scale)
    band = np.full((6 * scale, strip.shape[1], 3), 255, np.uint8)
    for i, t in enumerate(ts):
        x0 = (pad + i * (size + pad)) * scale
        band[scale:5 * scale, x0:x0 + size * scale] = (60, 170, 80) if abs(t) <= 1 + 1e-9 else (190, 190, 190)
    return np.concatenate([strip, band]), ts
