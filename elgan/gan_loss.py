"""ElganLoss: the two alternating phases of eq. (9), built from the pure terms in elgan.losses.

One generator pass per iteration serves everything: the perturbed composite T^X G(z, c) is both
D's fake input and the target of the equivariance loss, and the walked codes G(z + Phi(eps), c) ride
in the same batch (one G call of 2N samples instead of three calls of N). D's phase uses the fakes
detached, as in DCGAN's reference loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from . import losses
from .config import GanTrainConfig
from .nets.discriminator import Discriminator, SuperCategoryRecovery
from .nets.generator import LayeredGenerator, Layers, compose
from .nets.phi import LatentTransform
from .perturb import eps_to_params, sample_eps, transform_layers


class FakeBatch(NamedTuple):
    c: torch.Tensor  # [N] private codes
    c_sup: torch.Tensor  # [N] super-categories
    layers: Layers  # G(z, c), unperturbed
    perturbed: torch.Tensor  # [N, 3, H, W] T_eps^X G(z, c), eq. (3): D's input and the equivariance target
    walked: torch.Tensor | None  # [N, 3, H, W] G(z + Phi(eps), c), or None when equivariance is off
    z_walked: torch.Tensor | None  # [N, z_dim] T_eps^Z z for the moment regulariser


def mask_statistics(mask: torch.Tensor) -> dict[str, float]:
    """Mean mask area and the fraction of near-binary pixels: the collapse indicators of Fig. 2."""
    m = mask.detach()
    return {"mask_area": float(m.mean()), "mask_binary_frac": float(((m < 0.1) | (m > 0.9)).float().mean())}


class ElganLoss:
    """Holds the networks and returns (total loss, {term: value}) for each phase."""

    def __init__(self, cfg: GanTrainConfig, generator: LayeredGenerator, discriminator: Discriminator,
                 super_recovery: SuperCategoryRecovery, phi: LatentTransform,
                 pyramid: Callable[[torch.Tensor], list[torch.Tensor]] | None,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> None:
        self.cfg = cfg
        self.G, self.D, self.E_pi, self.phi = generator, discriminator, super_recovery, phi
        self.pyramid = pyramid
        self.augment = augment  # DiffAugment, applied to real and fake alike (D side)
        if cfg.loss.equivariance and pyramid is None:
            raise ValueError("the equivariance loss needs a perceptual feature network")

    def generate(self, n: int, rng: torch.Generator, device: torch.device) -> FakeBatch:
        cfg = self.cfg
        z, c = self.G.sample_codes(n, rng, device)
        eps = sample_eps(n, cfg.perturb, rng, device)
        z_walked = walked = None
        if cfg.loss.equivariance:
            z_walked = self.phi(z, eps)
            both = self.G(torch.cat([z, z_walked]), torch.cat([c, c]))
            layers = Layers(*(t[:n] for t in both))
            walked = both.image[n:]
        else:
            layers = self.G(z, c)
        fg, mask = transform_layers(layers.foreground, layers.mask, eps_to_params(eps, cfg.perturb))
        perturbed = compose(layers.background, fg, mask)
        return FakeBatch(c, self.G.super_category(c), layers, perturbed, walked, z_walked)

    def d_phase(self, real: torch.Tensor, fake: FakeBatch, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        """min_D L_adv^(D); E_x (on D's trunk) learns c from the detached fakes here, since only D's
        optimiser steps the shared trunk (InfoGAN's practice)."""
        n = real.shape[0]
        out = self.D(self.augment(torch.cat([real, fake.perturbed.detach()]), rng))
        loss_adv = losses.hinge_d(out.logits[:n], out.logits[n:])
        terms = {"d_adv": loss_adv, "d_real": out.logits[:n].mean(), "d_fake": out.logits[n:].mean()}
        total = loss_adv
        if self.cfg.loss.recovery:
            loss_c = losses.recovery_loss(out.category_logits[n:], fake.c)
            total = total + self.cfg.loss.gamma_r * loss_c
            terms["d_recover_c"] = loss_c
        terms["d_total"] = total
        return total, {k: v.item() for k, v in terms.items()}

    def g_phase(self, fake: FakeBatch, step: int, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        """min_{G, E, Phi} L_adv^(G) + g_r L_r + g_b L_b + g_e(t) L_equi + g_reg L_reg (+ g_size L_size)."""
        lc = self.cfg.loss
        out = self.D(self.augment(fake.perturbed, rng))
        terms: dict[str, torch.Tensor] = {"g_adv": losses.hinge_g(out.logits)}
        total = terms["g_adv"]
        terms["g_binarize"] = losses.binarization_loss(fake.layers.mask)
        total = total + lc.gamma_b * terms["g_binarize"]
        if lc.recovery:  # eq. (11): c from the composite, c_sup from the mask
            terms["g_recover_c"] = losses.recovery_loss(out.category_logits, fake.c)
            terms["g_recover_csup"] = losses.recovery_loss(self.E_pi(fake.layers.mask), fake.c_sup)
            total = total + lc.gamma_r * (terms["g_recover_c"] + terms["g_recover_csup"])
        if lc.mask_size:
            terms["g_mask_size"] = losses.mask_size_loss(fake.layers.mask, lc.mask_size_eta)
            total = total + lc.gamma_size * terms["g_mask_size"]
        if lc.equivariance:
            # Eq. (8) compares G(T^Z z, c) with T^X G(z, c). We read T^X G as eq. (3) defines it on a
            # generated image: transform the foreground and mask layers and re-compose over the
            # untouched background, not a warp of the flat composite -- the paper perturbs layers
            # everywhere else, and a warped composite would also move the background, which
            # G(z + Phi(eps), c) can only match by moving the background, the opposite of what we want.
            weight = losses.equivariance_weight(step, lc.gamma_equi, lc.equi_rampup_iters)
            terms["g_equivariance"] = losses.equivariance_loss(self.pyramid, fake.walked, fake.perturbed)
            terms["g_moment_reg"] = losses.moment_regularizer(fake.z_walked)
            terms["gamma_equi"] = torch.tensor(weight)
            total = total + weight * terms["g_equivariance"] + lc.gamma_reg * terms["g_moment_reg"]
        terms["g_total"] = total
        logs = {k: v.item() for k, v in terms.items()}
        logs.update(mask_statistics(fake.layers.mask))
        return total, logs
