"""T_eps^X: differentiable affine perturbation of the foreground layer and its mask (eqs. 3-5).

eps in [-1, 1]^d_eps indexes the transformation; each enabled degree of freedom maps *linearly* onto
its paper range (t_x, t_y in +-0.125 of the image side, alpha in +-15 deg, log2 s in +-0.2), so the
same eps drives T^X here and the latent walk Phi(eps). The order of eps's dimensions is
PerturbConfig.eps_names: (tx, ty, rotation, scale) with disabled ones dropped.

Conventions: image coordinates are affine_grid's normalised [-1, 1] (x right, y down), so a
translation of t image sides is 2t normalised units (PerturbGAN's convention of +-0.125 of the side;
ILSGAN uses 0.125 normalised units, half of it). A positive alpha rotates content clockwise on screen
(counter-clockwise in the y-down frame).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .config import PerturbConfig


class AffineParams(NamedTuple):
    tx: torch.Tensor  # [N] translation, fraction of the image side (x right)
    ty: torch.Tensor  # [N] translation, fraction of the image side (y down)
    angle: torch.Tensor  # [N] rotation, radians
    log2_scale: torch.Tensor  # [N] isotropic scale s = 2 ** log2_scale


def sample_eps(n: int, cfg: PerturbConfig, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """eps ~ U[-1, 1]^d_eps, [n, d_eps]."""
    gen_device = generator.device if generator is not None else device
    return (torch.rand(n, cfg.eps_dim, generator=generator, device=gen_device) * 2 - 1).to(device)


def eps_to_params(eps: torch.Tensor, cfg: PerturbConfig) -> AffineParams:
    """Map eps [N, d_eps] linearly onto the enabled parameter ranges; disabled ones are 0."""
    assert eps.dim() == 2 and eps.shape[1] == cfg.eps_dim, f"eps must be [N, {cfg.eps_dim}], got {tuple(eps.shape)}"
    cols = dict(zip(cfg.eps_names, eps.unbind(1), strict=True))
    zero = eps.new_zeros(eps.shape[0])
    return AffineParams(
        tx=cols.get("tx", zero) * cfg.max_translate,
        ty=cols.get("ty", zero) * cfg.max_translate,
        angle=cols.get("rotation", zero) * math.radians(cfg.max_rotate_deg),
        log2_scale=cols.get("scale", zero) * cfg.max_log2_scale,
    )


def forward_matrix(p: AffineParams) -> torch.Tensor:
    """A = T(t) R(alpha) S(s) as [N, 3, 3] in normalised coordinates (eq. 5)."""
    n = p.tx.shape[0]
    s = torch.exp2(p.log2_scale)
    cos, sin = torch.cos(p.angle), torch.sin(p.angle)
    a = p.tx.new_zeros(n, 3, 3)
    a[:, 0, 0], a[:, 0, 1], a[:, 0, 2] = s * cos, -s * sin, 2 * p.tx
    a[:, 1, 0], a[:, 1, 1], a[:, 1, 2] = s * sin, s * cos, 2 * p.ty
    a[:, 2, 2] = 1
    return a


def sampling_theta(p: AffineParams) -> torch.Tensor:
    """affine_grid's theta [N, 2, 3]: eq. (4) reads the source at A^-1 (u, v, 1)."""
    s_inv = torch.exp2(-p.log2_scale)
    cos, sin = torch.cos(p.angle), torch.sin(p.angle)
    tx, ty = 2 * p.tx, 2 * p.ty
    # A^-1 = S^-1 R^-1 T^-1: [[c, s], [-s, c]] / s applied to (u - t)
    r00, r01, r10, r11 = cos * s_inv, sin * s_inv, -sin * s_inv, cos * s_inv
    row0 = torch.stack([r00, r01, -(r00 * tx + r01 * ty)], 1)
    row1 = torch.stack([r10, r11, -(r10 * tx + r11 * ty)], 1)
    return torch.stack([row0, row1], 1)


def warp(x: torch.Tensor, p: AffineParams) -> torch.Tensor:
    """T^X applied to any stack of layers [N, C, H, W]; outside the source is zero (= background)."""
    grid = F.affine_grid(sampling_theta(p).to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def transform_layers(foreground: torch.Tensor, mask: torch.Tensor,
                     p: AffineParams) -> tuple[torch.Tensor, torch.Tensor]:
    """T^X of the foreground [N, 3, H, W] and mask [N, 1, H, W] in one batched grid_sample."""
    out = warp(torch.cat([foreground, mask], 1), p)
    return out[:, :3], out[:, 3:]
