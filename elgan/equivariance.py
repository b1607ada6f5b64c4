"""How much of the true move does the latent walk make? Eq. (7) measured on a trained generator.

For each direction d of the perturbation (tx, ty, rotation, scale) at eps = +1 along d (the edge of the
training range), over fixed seeds and categories:

  ratio_d = |G(z + Phi(eps), c) - T^X_eps G(z, c)| / |G(z, c) - T^X_eps G(z, c)|      (mean abs, per sample)

T^X G is eq. (3) on the layers: foreground and mask moved over the unmoved background, the target of
eq. (8). 0 means the walk reproduces the move exactly; 1 means the walk does nothing (G(z + Phi) = G(z));
we report the median over samples. Beside it, what the *mask* does, from its moments: the centroid shift
(tx, ty, as a fraction of the image side), the change of orientation (rotation, degrees) and the log2
change of the square root of the area (scale), under the walk and under T^X -- and their quotient, the
share of the true move that the walk makes (1 = all of it).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from .nets.generator import LayeredGenerator, compose
from .nets.phi import LatentTransform
from .perturb import eps_to_params, transform_layers

SEEDS = tuple(range(12))  # z of seed s: torch.Generator().manual_seed(s)
CATEGORY_STRIDE = 17  # category of the i-th sample: (i * 17) % n_categories (spread over c_sup groups)


def mask_moments(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """mask [N, 1, H, W] -> centroid (fraction of the side, from the centre), orientation (degrees) and
    log2 sqrt(area) per sample, from the first and second image moments."""
    n, _, h, w = mask.shape
    m = mask[:, 0].float()
    ys = (torch.arange(h, dtype=m.dtype) + 0.5) / h - 0.5
    xs = (torch.arange(w, dtype=m.dtype) + 0.5) / w - 0.5
    area = m.sum((1, 2)).clamp_min(1e-6)
    cx = (m * xs).sum((1, 2)) / area
    cy = (m * ys[:, None]).sum((1, 2)) / area
    dx, dy = xs[None, None, :] - cx[:, None, None], ys[None, :, None] - cy[:, None, None]
    mu20, mu02, mu11 = ((m * dx * dx).sum((1, 2)) / area, (m * dy * dy).sum((1, 2)) / area,
                        (m * dx * dy).sum((1, 2)) / area)
    angle = torch.rad2deg(0.5 * torch.atan2(2 * mu11, mu20 - mu02))
    return {"tx": cx, "ty": cy, "rotation": angle, "scale": 0.5 * torch.log2(area / (h * w))}


def _delta(after: torch.Tensor, before: torch.Tensor, name: str) -> torch.Tensor:
    d = after - before
    if name == "rotation":  # orientation is defined modulo 180 degrees
        d = (d + 90) % 180 - 90
    return d


@torch.no_grad()
def measure_equivariance(generator: LayeredGenerator, phi: LatentTransform, perturb: Any,
                         seeds: tuple[int, ...] = SEEDS, eps_value: float = 1.0) -> dict[str, dict[str, float]]:
    """{direction: {ratio, walk_move, true_move, move_share}} (medians over the seeds). Eval mode."""
    generator.eval()
    device = next(generator.parameters()).device
    n = len(seeds)
    z = torch.cat([generator.sample_codes(1, torch.Generator().manual_seed(s), device)[0] for s in seeds])
    c = torch.tensor([(i * CATEGORY_STRIDE) % generator.cfg.n_categories for i in range(n)], device=device)
    base = generator(z, c)
    before = mask_moments(base.mask.cpu())
    out: dict[str, dict[str, float]] = {}
    for d, name in enumerate(perturb.eps_names):
        eps = torch.zeros(n, perturb.eps_dim, device=device)
        eps[:, d] = eps_value
        walked = generator(phi(z, eps), c)
        fg, mask = transform_layers(base.foreground, base.mask, eps_to_params(eps, perturb))
        true = compose(base.background, fg, mask)
        num = (walked.image - true).abs().flatten(1).mean(1)
        den = (base.image - true).abs().flatten(1).mean(1).clamp_min(1e-8)
        walk_move = _delta(mask_moments(walked.mask.cpu())[name], before[name], name)
        true_move = _delta(mask_moments(mask.cpu())[name], before[name], name)
        share = [float(w / t) for w, t in zip(walk_move, true_move, strict=True) if abs(float(t)) > 1e-6]
        out[name] = {"ratio": statistics.median((num / den).tolist()),
                     "walk_move": statistics.median(walk_move.tolist()),
                     "true_move": statistics.median(true_move.tolist()),
                     "move_share": statistics.median(share) if share else math.nan}
    return out


def meets_target(result: dict[str, dict[str, float]], max_ratio: float = 0.5) -> bool:
    """The walk does at least half of the true move in every direction (ratio <= 0.5)."""
    return all(v["ratio"] <= max_ratio for v in result.values())
