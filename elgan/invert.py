"""GAN inversion: find (z, c) with G(z, c) close to a given image, so a real photo gets layers.

Once a photo is written as G(z, c), everything the generator offers applies to it: its background,
foreground and mask (a training-free segmentation), the equivariant walk z + Phi(eps) (move, rotate,
scale the object) and a new c (restyle it). The search:

1. **Starts.** Categories: the top-k of the discriminator's c-recovery head E_x(c | x) on the photo
   (the network trained to name c from an image, eq. 6), or k random ones without a discriminator.
   z: `candidates` draws from N(0, I), each scored with every start category by one forward pass
   (no gradient, a third of a step's cost); the best `restarts` pairs, at least one per category, go on.
2. **Joint search.** All restarts as one batch, Adam on z and on logits over the categories. The
   generator takes an integer c, which has no gradient, so c is relaxed: softmax(logits) feeds
   ``LayeredGenerator.forward_soft`` (the same weights; a one-hot gives forward() exactly).
3. **Snap and refine.** Each restart's c becomes its argmax; the restart with the lowest loss *at its
   snapped c* is refined on z alone, so the result is an honest G(z, c) with an integer c.

Loss per restart = w_perceptual * L_percp (the paper's perceptual distance, Gamma^(0) = the image
included) + w_pixel * mean |x - y| + w_prior * (||z||^2 / z_dim - 1)^2. The prior keeps z on the
Gaussian shell where G was trained (||z||^2 ~ z_dim): off it, the layers fall apart even where the
composite still matches, and Phi's walk, trained on that shell, stops meaning what it says.

The feature net: a bundle holds none, so by default a small RotNet-architecture net with *random*
weights, seeded (``random_feature_net``) -- random conv features, unit-normalised per position as
L_percp does, still compare local structure (edges, texture) far better than pixels alone; a trained
RotNet (a GAN run's rotnet.safetensors, via ``rotnet_trainer.load_feature_net``) may be passed instead,
and ``w_perceptual=0`` gives a pixel-only search. Everything is seeded: the same call gives the same
codes.

A photo of any size goes in through ``invert_photo`` (centre-cropped square, as the evaluation transform
does), the one call behind the app's "Your photo" tab and ``python -m training.invert``; ``is_poor`` says
when the codes found describe some G(z, c) rather than the photo -- an inversion fails quietly otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.base import eval_transform
from .losses import normalize_features
from .nets.generator import LayeredGenerator, Layers
from .nets.rotnet import RotNet, RotNetConfig, freeze
from .visualize import VIEW_PX, layer_views, upscale

if TYPE_CHECKING:  # annotations only
    from PIL import Image

    from .bundle import ModelBundle

Progress = Callable[[int, int, float], None]  # (step, total, loss)

# A reconstruction is called poor when it reproduces less than MIN_EXPLAINED of the photo's pixel
# variation (distances["explained"] = 1 - MSE / the photo's variance) and is not already within
# GOOD_MAE mean pixel error. Pixel error alone misjudges contrast: on the shipped 64 px model a vivid
# sample of its own came back at error 0.107 and looked right, a flat synthetic scene at 0.098 had the
# object in the wrong layer and place. Explained variation orders them as the eye does: on that model,
# default settings, its own samples came back at 0.35-0.98 (12 samples; around 0.5 the shape is right
# and details are off, below it parts are missing) and held-out synthetic test scenes at -0.67-0.20
# (12 scenes; object in the wrong place or layer).
MIN_EXPLAINED = 0.5
GOOD_MAE = 0.03
MIN_STEPS, MAX_STEPS = 0, 300  # the joint search steps a photo's caller may ask for (CPU time grows linearly)


class InversionError(ValueError):
    """A photo inversion asked for outside its bounds; the message is written for the person who asked."""


@dataclass(frozen=True)
class InversionConfig:
    """Defaults fit the 5 s CPU budget of one 64 px image on the shipped generator (width 12): measured
    2.2-2.5 s on one thread beside a training job (benchmarks/bench_invert.py); ~1 s more for a process's
    first call. Cost is about linear in restarts x steps."""

    top_k: int = 3  # start categories: E_x's top-k, or k random ones without a discriminator
    candidates: int = 12  # z draws screened per start category (forward only)
    restarts: int = 2  # (z, c) pairs optimised together as one batch (cost ~linear in it)
    steps: int = 40  # joint Adam steps on z and the c logits
    refine_steps: int = 15  # z-only steps on the best restart after c is snapped
    lr: float = 0.05  # Adam on z
    lr_c: float = 0.3  # Adam on the c logits
    lr_final: float = 1.0  # cosine decay of both rates to this fraction over each phase (1 = constant)
    beta1: float = 0.5  # Adam's momentum; 0.5 beat 0.9 in 40-step runs (less overshoot), see bench_invert
    c_init_logit: float = 6.0  # start logit of the start category (softmax ~0.67 on it; the rest share 0.33)
    w_perceptual: float = 1.0  # 0 = pixel-only
    w_pixel: float = 1.0  # mean |x - y| on [-1, 1]
    w_prior: float = 1.0  # (||z||^2 / z_dim - 1)^2
    patience: int = 8  # early stop: steps without a relative improvement of `tol` in the best loss
    tol: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.top_k, self.candidates, self.restarts) < 1 or min(self.steps, self.refine_steps) < 0:
            raise ValueError(f"top_k, candidates and restarts must be >= 1 and steps >= 0: {self}")
        if min(self.lr, self.lr_c) <= 0 or min(self.w_perceptual, self.w_pixel, self.w_prior) < 0:
            raise ValueError(f"learning rates must be > 0 and weights >= 0: {self}")


@dataclass
class Inversion:
    """G(z, c) for the codes found, and how far it is from the target."""

    z: torch.Tensor  # [1, z_dim]
    c: int
    c_sup: int  # c // group_size, the super-category that shaped the mask
    layers: Layers  # [1, ...] each, detached: G(z, c)
    distances: dict[str, float]  # loss, perceptual, pixel_mae (mean |x - y| / 2, in [0, 1]), pixel_mse,
    #   explained (1 - pixel_mse / the target's pixel variance: the share of the image's variation the
    #   reconstruction reproduces, contrast-independent), z_norm2 (||z||^2 / z_dim; ~1 on the shell)
    steps: int  # optimisation steps actually run, both phases (early stop may end a phase sooner)
    seconds: float
    start_categories: list[int]
    config: InversionConfig
    search_steps: int = 0  # of `steps`, those of the joint search on z and c (at most config.steps) ...
    refine_steps: int = 0  # ... and those of the z-only refinement after c is snapped (config.refine_steps)

    @property
    def reconstruction(self) -> torch.Tensor:
        return self.layers.image  # [1, 3, H, W] in [-1, 1]

    def codes(self) -> dict[str, Any]:
        """JSON-ready: z as a list of floats, c, c_sup."""
        return {"z": [float(v) for v in self.z[0].tolist()], "c": self.c, "c_sup": self.c_sup}


def random_feature_net(seed: int = 0, width: int = 8) -> RotNet:
    """A RotNet-architecture net with random weights drawn from `seed`: a fixed, deterministic
    perceptual metric when no trained one is at hand (width 8: a tenth of a step's cost at 64 px)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RotNet(RotNetConfig(width=width, blocks=3))
    return freeze(net)  # type: ignore[return-value]


def per_sample_perceptual(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
    """losses.perceptual_distance without the batch mean: [N] (for one image, exactly the same value)."""
    total = feats_x[0].new_zeros(feats_x[0].shape[0])
    for level, (fx, fy) in enumerate(zip(feats_x, feats_y, strict=True)):
        if level > 0:
            fx, fy = normalize_features(fx), normalize_features(fy)
        total = total + (fx - fy).pow(2).sum(1).flatten(1).mean(1)
    return total


class _Objective:
    """Per-restart loss terms against one target (the target's features computed once)."""

    def __init__(self, target: torch.Tensor, cfg: InversionConfig, features: nn.Module | None) -> None:
        self.target, self.cfg = target, cfg
        self.features = features if cfg.w_perceptual > 0 else None
        self.target_feats = [f.detach() for f in self.features.pyramid(target)] if self.features else None
        # the target's own pixel variance (per channel, around its mean colour): the scale of "explained"
        self.target_var = (target - target.mean((2, 3), keepdim=True)).pow(2).mean().clamp_min(1e-6)

    def terms(self, image: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        n = image.shape[0]
        diff = image - self.target
        out = {"pixel_mae": diff.abs().flatten(1).mean(1) / 2, "pixel_mse": diff.pow(2).flatten(1).mean(1),
               "z_norm2": z.pow(2).mean(1)}
        out["explained"] = 1 - out["pixel_mse"] / self.target_var  # R^2: 1 = exact, <= 0 = no better than flat
        if self.features is not None and self.target_feats is not None:
            feats = self.features.pyramid(image)
            out["perceptual"] = per_sample_perceptual(feats, [f.expand(n, *f.shape[1:]) for f in self.target_feats])
        else:
            out["perceptual"] = per_sample_perceptual([image], [self.target.expand_as(image)])  # Gamma^(0) only
        out["loss"] = (self.cfg.w_perceptual * out["perceptual"] + self.cfg.w_pixel * 2 * out["pixel_mae"]
                       + self.cfg.w_prior * (out["z_norm2"] - 1).pow(2))
        return out  # each [N]


def start_categories(generator: LayeredGenerator, target: torch.Tensor, k: int,
                     discriminator: nn.Module | None, rng: torch.Generator) -> list[int]:
    """E_x's k most probable categories for the target, else k distinct random ones."""
    n = generator.cfg.n_categories
    k = min(k, n)
    d_size = getattr(getattr(discriminator, "cfg", None), "size", target.shape[-1])
    if discriminator is not None and d_size == target.shape[-1]:  # a D of another size cannot read it
        with torch.no_grad():
            logits = discriminator(target).category_logits[0]  # [n_categories]
        if logits.shape[0] == n:
            return [int(c) for c in logits.topk(k).indices.tolist()]
    return [int(c) for c in torch.randperm(n, generator=rng)[:k].tolist()]


def _screen(generator: LayeredGenerator, objective: _Objective, cats: list[int], cfg: InversionConfig,
            rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Score `candidates` z draws with every start category; keep `restarts` pairs, best first: the best z
    of each category while there is room (so c gets several chances, not only z), then the next best."""
    device = objective.target.device
    z_dim = generator.cfg.z_dim
    z = torch.randn(cfg.candidates, z_dim, generator=rng).to(device)
    zz = z.repeat(len(cats), 1)  # [K * M, z_dim], category-major
    cc = torch.tensor(cats, device=device).repeat_interleave(cfg.candidates)
    with torch.no_grad():
        losses = torch.cat([objective.terms(generator(zz[i:i + 64], cc[i:i + 64]).image, zz[i:i + 64])["loss"]
                            for i in range(0, zz.shape[0], 64)])
    per_cat = losses.view(len(cats), cfg.candidates)  # [K, M]
    best_of_cat = (per_cat.argmin(1) + torch.arange(len(cats), device=device) * cfg.candidates).tolist()
    chosen = sorted(best_of_cat, key=lambda i: losses[i].item())[:cfg.restarts]  # one per category first
    chosen += [i for i in losses.argsort().tolist() if i not in chosen][:cfg.restarts - len(chosen)]
    chosen.sort(key=lambda i: losses[i].item())
    return zz[chosen].clone(), cc[chosen].clone()


def _adam_loop(params: list[torch.Tensor], lrs: list[float], steps: int, loss_fn: Callable[[], torch.Tensor],
               cfg: InversionConfig, on_step: Callable[[float], None]) -> int:
    """Adam on `params` (gradients via autograd.grad: the generator's weights get none), early stop."""
    opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)],
                           betas=(cfg.beta1, 0.999))
    best, stale = math.inf, 0
    for step in range(steps):
        # cosine decay to lr_final * lr: big moves while far away, a settled point at the end
        scale = cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            group["lr"] = lr * scale
        per_restart = loss_fn()
        grads = torch.autograd.grad(per_restart.sum(), params)  # restarts are independent: sum, not mean
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        current = float(per_restart.detach().min())
        on_step(current)
        if current < best * (1 - cfg.tol):
            best, stale = current, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                return step + 1
    return steps


def invert(generator: LayeredGenerator, target: torch.Tensor, cfg: InversionConfig | None = None,
           discriminator: nn.Module | None = None, features: nn.Module | None = None,
           categories: Sequence[int] | None = None, progress: Progress | None = None) -> Inversion:
    """Codes (z, c) whose G(z, c) reproduces `target` [1, 3, S, S] in [-1, 1], S = the generator's size.

    `features`: a perceptual net with ``pyramid`` (default: ``random_feature_net(cfg.seed)``).
    `categories`: start categories to use instead of E_x's top-k / random ones.
    `progress(step, total, loss)` is called after every optimisation step.
    """
    cfg = cfg or InversionConfig()
    g = generator
    size = g.cfg.size
    if target.dim() != 4 or tuple(target.shape) != (1, 3, size, size):
        raise ValueError(f"target must be [1, 3, {size}, {size}] (the generator's size), got {tuple(target.shape)}")
    was_training = g.training
    g.eval()
    t0 = time.perf_counter()
    device = next(g.parameters()).device
    target = target.to(device).float()
    rng = torch.Generator().manual_seed(cfg.seed)
    if features is None and cfg.w_perceptual > 0:
        features = random_feature_net(cfg.seed).to(device)
    objective = _Objective(target, cfg, features)
    total, done = cfg.steps + cfg.refine_steps, 0

    def tick(loss: float) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, loss)

    try:
        with torch.enable_grad():  # callers (the app) may run under no_grad / inference_mode
            cats = [int(c) for c in categories] if categories else \
                start_categories(g, target, cfg.top_k, discriminator, rng)
            if min(cats) < 0 or max(cats) >= g.cfg.n_categories:
                raise ValueError(f"categories must be in [0, {g.cfg.n_categories - 1}], got {cats}")
            z0, c0 = _screen(g, objective, cats, cfg, rng)
            z = z0.requires_grad_(True)  # [R, z_dim]
            logits = (cfg.c_init_logit * F.one_hot(c0, g.cfg.n_categories).float()).requires_grad_(True)
            search = _adam_loop([z, logits], [cfg.lr, cfg.lr_c], cfg.steps,
                                lambda: objective.terms(g.forward_soft(z, logits.softmax(1)).image, z)["loss"],
                                cfg, tick)
            with torch.no_grad():  # snap each restart's c, pick the best restart at its integer c
                c_hard = logits.argmax(1)
                best = int(objective.terms(g(z, c_hard).image, z)["loss"].argmin())
            z1 = z[best:best + 1].detach().clone().requires_grad_(True)
            c1 = c_hard[best:best + 1]
            done = cfg.steps  # the joint phase may have stopped early: refinement counts from here
            refine = _adam_loop([z1], [cfg.lr], cfg.refine_steps,
                                lambda: objective.terms(g(z1, c1).image, z1)["loss"], cfg, tick)
        with torch.no_grad():
            z_final = z1.detach()
            layers = Layers(*(t.detach() for t in g(z_final, c1)))
            terms = objective.terms(layers.image, z_final)
    finally:
        g.train(was_training)
    c = int(c1)
    return Inversion(z=z_final, c=c, c_sup=g.super_category(c), layers=layers,
                     distances={k: float(v) for k, v in terms.items()}, steps=search + refine,
                     seconds=time.perf_counter() - t0, start_categories=cats, config=cfg, search_steps=search,
                     refine_steps=refine)


def to_target(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float [B, 3, size, size] in [-1, 1] (antialiased resize, as the U-Net's input)."""
    x = images.float() / 127.5 - 1
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def inversion_masks(generator: LayeredGenerator, images: torch.Tensor, cfg: InversionConfig | None = None,
                    discriminator: nn.Module | None = None, features: nn.Module | None = None) -> torch.Tensor:
    """Segmentation by inversion: the generator's own mask of each inverted image, a segmenter that needs
    no training beyond the GAN. uint8 [B, 3, S, S] -> foreground probability [B, 1, S, S] on the CPU,
    upsampled bilinearly to S before any threshold (the U-Net protocol of elgan/evaluate.py)."""
    device = next(generator.parameters()).device
    targets = to_target(images, generator.cfg.size).to(device)
    masks = [invert(generator, targets[i:i + 1], cfg, discriminator, features).layers.mask
             for i in range(targets.shape[0])]
    prob = torch.cat(masks)  # [B, 1, size, size]
    if prob.shape[-2:] != images.shape[-2:]:
        prob = F.interpolate(prob, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return prob.cpu()


# ---- a photo in: the app's "Your photo" tab and python -m training.invert -------------------------------

def photo_target(image: Image.Image, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The photo as the generator sees it -- shorter side to `size`, centre-cropped square (the
    evaluation transform) -- as a target [1, 3, size, size] in [-1, 1] and as uint8 [size, size, 3]."""
    square = eval_transform(image, size)  # uint8 [3, size, size]
    return square[None].float() / 127.5 - 1, square.permute(1, 2, 0).numpy()


def invert_photo(model: ModelBundle, image: Image.Image, steps: int | None = None, seed: int = 0,
                 progress: Progress | None = None) -> tuple[np.ndarray, Inversion]:
    """Invert a photo into `model`'s generator: (the square crop it was matched against, the result).
    `steps`: joint search steps in [MIN_STEPS, MAX_STEPS] (None: InversionConfig's), else InversionError."""
    cfg = InversionConfig(seed=int(seed))
    if steps is not None:
        if not MIN_STEPS <= int(steps) <= MAX_STEPS:
            raise InversionError(f"steps must be in [{MIN_STEPS}, {MAX_STEPS}], got {steps}")
        cfg = replace(cfg, steps=int(steps))
    g = model.generator
    target, original = photo_target(image, g.cfg.size)
    result = invert(g, target.to(next(g.parameters()).device), cfg, model.discriminator, progress=progress)
    return original, result


def is_poor(result: Inversion) -> bool:
    """The codes describe some G(z, c), not the photo (see MIN_EXPLAINED): say so rather than edit it."""
    d = result.distances
    return d["explained"] < MIN_EXPLAINED and d["pixel_mae"] > GOOD_MAE


def steps_text(result: Inversion) -> str:
    """'40 search + 15 refinement steps': the search steps are the app's slider (and --steps), the
    refinement of z after c is snapped comes on top (InversionConfig.refine_steps); early stopping may
    end either phase sooner."""
    return f"{result.search_steps} search + {result.refine_steps} refinement steps"


def result_views(original: np.ndarray, result: Inversion, target: int | None = VIEW_PX) -> dict[str, np.ndarray]:
    """original, reconstruction, background, foreground, mask, cutout: uint8, upscaled to ~target px."""
    views = layer_views(result.layers, target)
    views["reconstruction"] = views.pop("image")
    views["original"] = upscale(original, target)
    return views
