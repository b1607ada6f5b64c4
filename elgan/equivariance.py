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

The two sides of eq. (7) for one code are also the edits a person makes (the app's Explore and "Your
photo" tabs, ``training.invert``): ``edit`` is G(z + Phi(eps), c), the latent walk; ``move_layers`` is
T^X_eps G(z, c), the same move done on the layers. Both take eps by name ({"tx": 1.0}) and refuse what
the model cannot take with an EditError, whose message is written for the person who asked.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from .config import PerturbConfig
from .nets.generator import LayeredGenerator, Layers, compose
from .nets.phi import LatentTransform
from .perturb import eps_to_params, transform_layers

if TYPE_CHECKING:  # annotations only: the bundle module pulls in every network
    from .bundle import ModelBundle

SEEDS = tuple(range(12))  # z of seed s: torch.Generator().manual_seed(s)
CATEGORY_STRIDE = 17  # category of the i-th sample: (i * 17) % n_categories (spread over c_sup groups)
# Every direction a perturbation can have, in eps order: the default config enables them all, so the names
# are PerturbConfig's own (a model trained with fewer ignores the ones it lacks).
DIRECTIONS: tuple[str, ...] = PerturbConfig().eps_names
EPS_LIMIT = 3.0  # |eps| an edit may ask for: training covered only [-1, 1] (Fig. 7 extrapolates beyond it)


class EditError(ValueError):
    """A code or edit the model cannot take (category out of range, unknown direction, eps too large); the
    message is written for the person who asked, so callers (the app, the CLIs) show it as it is."""


def check_category(generator: LayeredGenerator, c: int) -> int:
    """c as an int, if the generator has that category."""
    n = generator.cfg.n_categories
    if not 0 <= int(c) < n:
        raise EditError(f"c must be in [0, {n - 1}] for this model, got {c}")
    return int(c)


def eps_vector(perturb: PerturbConfig, eps: Mapping[str, float]) -> torch.Tensor:
    """Named directions -> eps [1, d_eps] in the model's order; directions the model lacks are dropped
    (asking for a known direction is never an error, so one request fits every model)."""
    for name, value in eps.items():
        if name not in DIRECTIONS:
            raise EditError(f"unknown direction {name!r}; known: {', '.join(DIRECTIONS)}")
        if not math.isfinite(value) or abs(value) > EPS_LIMIT + 1e-6:
            raise EditError(f"eps {name} must be in [-{EPS_LIMIT:g}, {EPS_LIMIT:g}], got {value}")
    return torch.tensor([[float(eps.get(n, 0.0)) for n in perturb.eps_names]])


def walk(phi: LatentTransform | None, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """T_eps^Z z = z + Phi(eps): [N, z_dim]; z itself when there is no Phi or eps is empty or all zero
    (so a model without Phi still draws its unmoved picture, and eps = 0 costs nothing)."""
    if phi is None or eps.shape[1] == 0 or not bool(eps.any()):
        return z
    return phi(z, eps.to(z.device).expand(z.shape[0], -1))


def move(layers: Layers, eps: torch.Tensor, perturb: PerturbConfig) -> Layers:
    """T_eps^X on a layer stack (eq. 3): foreground and mask warped, composited over the same background.
    One stack under many eps [N, d_eps], or one eps per stack; the target the walk is measured against."""
    n = max(layers.image.shape[0], eps.shape[0])
    bg, fg, mask = (t.expand(n, -1, -1, -1) for t in (layers.background, layers.foreground, layers.mask))
    fg, mask = transform_layers(fg, mask, eps_to_params(eps.to(bg.device).expand(n, -1), perturb))
    return Layers(bg, fg, mask, compose(bg, fg, mask))


@torch.inference_mode()
def edit(model: ModelBundle, z: torch.Tensor, c: int, eps: Mapping[str, float]) -> Layers:
    """G(z + Phi(eps), c): the code's picture moved / rotated / scaled by the latent walk, restyled by c."""
    c = check_category(model.generator, c)
    z_walked = walk(model.phi, z, eps_vector(model.perturb, eps))
    return model.generator(z_walked, torch.tensor([c], device=z.device))


@torch.inference_mode()
def move_layers(model: ModelBundle, z: torch.Tensor, c: int, eps: Mapping[str, float]) -> torch.Tensor:
    """T_eps^X G(z, c): the layers of G(z, c) moved directly, the object warped over the same background.

    What the Phi walk should produce (eq. 7); shown beside it because a model whose Phi is weak still
    gets an exact move of its layers this way -- the layered decomposition's own edit. [1, 3, H, W].
    """
    c = check_category(model.generator, c)
    base = model.generator(z, torch.tensor([c], device=z.device))
    return move(base, eps_vector(model.perturb, eps), model.perturb).image


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
def measure_equivariance(generator: LayeredGenerator, phi: LatentTransform, perturb: PerturbConfig,
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
        walked = generator(walk(phi, z, eps), c)
        moved = move(base, eps, perturb)
        true, mask = moved.image, moved.mask
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
