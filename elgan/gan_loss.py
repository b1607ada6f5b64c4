"""ElganLoss: the two alternating phases of eq. (9), built from the pure terms in elgan.losses.

One generator pass per iteration serves everything: the perturbed composite T^X G(z, c) is both
D's fake input and the target of the equivariance loss, and the walked codes G(z + Phi(eps), c) ride
in the same batch (one G call of 2N samples instead of three calls of N). D's phase uses the fakes
detached, as in DCGAN's reference loop.

Under DistributedDataParallel (see elgan.train.distributed) the trainer passes DDP wrappers for the training
forwards and the plain modules beside them (this module never needs to know which is which), and the
pairing of forward and backward passes is what keeps gradient sync right:
* G and Phi run forward once per iteration; their only backward is the G phase's (the D phase reads
  the fakes detached), so each wrapper sees one forward and one backward, as DDP requires.
* D runs through its wrapper in the D phase only, whose backward all-reduces D's gradients before
  D's step. The G phase backpropagates through D's *plain module*: no gradient sync for a D that will
  not step; the local D gradients it leaves are discarded by opt_d.zero_grad before the next D backward.
* Phi's moment regulariser is a batch statistic: it is computed on the global batch (``gather``), so
  the loss does not depend on how the batch is split over ranks.
Autocast covers the network forwards only; every loss term is computed in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from . import losses
from .config import GanTrainConfig
from .metrics import top1
from .nets.discriminator import Discriminator  # or the projected D: same outputs
from .nets.generator import LayeredGenerator, Layers, compose
from .nets.phi import LatentTransform
from .nets.recovery import SuperCategoryRecovery
from .perturb import eps_to_params, sample_eps, transform_layers


class Phase(NamedTuple):
    """One alternating step of eq. (9): which optimiser, which loss terms, which networks it steps."""

    optimiser: str  # the trainer's Adam for this phase
    terms: tuple[str, ...]  # the loss terms summed into the phase's total (those the config enables)
    steps: tuple[str, ...]  # the networks whose trainable parameters that optimiser holds, in order


# Who steps what. E_x is D's category head: it learns c in D's phase from detached fakes (InfoGAN's
# practice: only D's optimiser steps the shared trunk); G, Phi and E_pi step together in G's phase. D's
# gradients left by the G phase are never applied: opt_d.zero_grad runs before the next D backward.
PHASES: dict[str, Phase] = {
    "D": Phase("opt_d", ("d_adv", "d_recover_c", "d_background_fake"), ("discriminator",)),
    "G": Phase("opt_g", ("g_adv", "g_binarize", "g_recover_c", "g_recover_csup", "g_mask_size", "g_mask_ceiling",
                         "g_independence", "g_equivariance", "g_equi_pixel", "g_moment_reg"),
               ("generator", "phi", "super_recovery")),
}


class FakeBatch(NamedTuple):
    c: torch.Tensor  # [N] private codes
    c_sup: torch.Tensor  # [N] super-categories
    layers: Layers  # G(z, c), unperturbed
    perturbed: torch.Tensor  # [N, 3, H, W] T_eps^X G(z, c), eq. (3): D's input and the equivariance target
    walked: torch.Tensor | None  # [N, 3, H, W] G(z + Phi(eps), c), or None when equivariance is off
    z_walked: torch.Tensor | None  # [N, z_dim] T_eps^Z z for the moment regulariser
    z: torch.Tensor | None = None  # [N, z_dim] the codes before the walk (the regulariser's known form)


EMPTY_AREA = 0.05  # a sample whose mask covers less than this has, for a viewer, no object


def mask_statistics(mask: torch.Tensor) -> dict[str, float]:
    """Mean mask area and the fraction of near-binary pixels, the collapse indicators of Fig. 2, and the
    share of near-empty samples, which a batch-mean prior (the mask ceiling) does not see."""
    m = mask.detach().float()  # [N, 1, H, W]
    areas = m.flatten(1).mean(1)  # [N]
    return {"mask_area": float(areas.mean()), "mask_binary_frac": float(((m < 0.1) | (m > 0.9)).float().mean()),
            "mask_empty_frac": float((areas < EMPTY_AREA).float().mean())}


class ElganLoss:
    """Holds the networks and returns (total loss, {term: value}) for each phase.

    `generator`, `discriminator`, `super_recovery` and `phi` may be DDP wrappers (module docstring);
    `plain_generator` / `plain_discriminator` are the same G and D unwrapped (default: the ones given), for
    the calls that must not sync: code sampling and the G phase's D;
    `autocast` opens the mixed-precision context of the forwards, `gather` turns a rank's share of a
    batch into the global batch (both are identities in a one-process fp32 run).
    """

    def __init__(self, cfg: GanTrainConfig, generator: LayeredGenerator | nn.Module,
                 discriminator: Discriminator | nn.Module, super_recovery: SuperCategoryRecovery | nn.Module,
                 phi: LatentTransform | nn.Module, pyramid: Callable[[torch.Tensor], list[torch.Tensor]] | None,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 gather: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
                 plain_generator: LayeredGenerator | None = None,
                 plain_discriminator: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.G, self.D, self.E_pi, self.phi = generator, discriminator, super_recovery, phi
        self.generator: LayeredGenerator = plain_generator or generator  # type: ignore[assignment]  # codes, c_sup
        self.D_local = plain_discriminator or discriminator  # the G phase's D: no gradient sync (docstring)
        self.pyramid = pyramid
        self.augment = augment  # DiffAugment, applied to real and fake alike (D side)
        self.autocast, self.gather = autocast, gather
        if cfg.loss.equivariance and pyramid is None:
            raise ValueError("the equivariance loss needs a perceptual feature network")

    def generate(self, n: int, rng: torch.Generator, device: torch.device,
                 codes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> FakeBatch:
        """G's pass of one iteration on n fresh codes, or on given (z, c, eps) (tests feed the same
        codes to one process and to the ranks of a distributed run)."""
        cfg = self.cfg
        if codes is None:
            z, c = self.generator.sample_codes(n, rng, device)
            eps = sample_eps(n, cfg.perturb, rng, device)
        else:
            z, c, eps = codes
        z_walked = walked = None
        if cfg.loss.equivariance:
            z_walked = self.phi(z, eps)  # fp32: a 4-layer MLP, and the moment regulariser reads it
            with self.autocast():
                both = self.G(torch.cat([z, z_walked]), torch.cat([c, c]))
            layers = Layers(*(t[:n].float() for t in both))
            walked = both.image[n:].float()
        else:
            with self.autocast():
                layers = Layers(*(t.float() for t in self.G(z, c)))
        fg, mask = transform_layers(layers.foreground, layers.mask, eps_to_params(eps, cfg.perturb))
        perturbed = compose(layers.background, fg, mask)
        return FakeBatch(c, self.generator.super_category(c), layers, perturbed, walked, z_walked, z)

    def d_phase(self, real: torch.Tensor, fake: FakeBatch, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        """min_D L_adv^(D); E_x (on D's trunk) learns c from the detached fakes here, since only D's
        optimiser steps the shared trunk (InfoGAN's practice)."""
        n, m = real.shape[0], fake.perturbed.shape[0]
        lc = self.cfg.loss
        batch = [real, fake.perturbed.detach()]
        if lc.gamma_bg > 0:  # the background layers ride in the same forward (one DDP pass)
            batch.append(fake.layers.background.detach())
        x = self.augment(torch.cat(batch), rng)
        with self.autocast():
            out = self.D(x)
        out = type(out)(*(t.float() for t in out))
        fake_logits = out.logits[n:n + m]
        loss_adv = losses.hinge_d(out.logits[:n], fake_logits)
        terms = {"d_adv": loss_adv, "d_real": out.logits[:n].mean(), "d_fake": fake_logits.mean()}
        total = loss_adv
        if lc.gamma_bg > 0:
            terms["d_background_fake"] = losses.background_fake(out.logits[n + m:])
            total = total + lc.gamma_bg * terms["d_background_fake"]
        if lc.recovery:
            loss_c = losses.recovery_loss(out.category_logits[n:n + m], fake.c)
            total = total + lc.gamma_r * loss_c
            terms["d_recover_c"] = loss_c
        terms["d_total"] = total
        logs = {k: v.item() for k, v in terms.items()}
        if lc.recovery:  # layer health: does E_x name c from the (perturbed) composite?
            logs["health_ex_top1"] = top1(out.category_logits[n:n + m], fake.c)
        return total, logs

    def g_phase(self, fake: FakeBatch, step: int, rng: torch.Generator) -> tuple[torch.Tensor, dict]:
        """min_{G, E, Phi} L_adv^(G) + g_r L_r + g_b L_b + g_e(t) L_equi + g_reg L_reg (+ g_size L_size, + options)."""
        lc = self.cfg.loss
        x = self.augment(fake.perturbed, rng)
        with self.autocast():
            out = self.D_local(x)
        out = type(out)(*(t.float() for t in out))
        terms: dict[str, torch.Tensor] = {"g_adv": losses.hinge_g(out.logits)}
        total = terms["g_adv"]
        terms["g_binarize"] = losses.binarization_loss(fake.layers.mask)
        total = total + lc.gamma_b * terms["g_binarize"]
        if lc.recovery:  # eq. (11): c from the composite, c_sup from the mask
            terms["g_recover_c"] = losses.recovery_loss(out.category_logits, fake.c)
            with self.autocast():
                csup_logits = self.E_pi(fake.layers.mask)
            terms["g_recover_csup"] = losses.recovery_loss(csup_logits.float(), fake.c_sup)
            health = {"health_epi_top1": top1(csup_logits, fake.c_sup)}  # does the mask carry c_sup?
            total = total + lc.gamma_r * (terms["g_recover_c"] + terms["g_recover_csup"])
        if lc.mask_size:
            terms["g_mask_size"] = losses.mask_size_loss(fake.layers.mask, lc.mask_size_eta)
            total = total + lc.gamma_size * terms["g_mask_size"]
        if lc.mask_ceiling > 0:  # a prior on the average object size, on the global batch
            areas = self.gather(fake.layers.mask.float().flatten(1).mean(1))
            terms["g_mask_ceiling"] = losses.mask_ceiling_loss(areas, lc.mask_ceiling)
            total = total + lc.gamma_size * terms["g_mask_ceiling"]
        if lc.gamma_indep > 0:  # the unperturbed layers, as ILSGAN; each sample paired with its neighbour
            bg, fg, mask = fake.layers.background, fake.layers.foreground, fake.layers.mask
            pairing = torch.roll(torch.arange(mask.shape[0], device=mask.device), 1)
            terms["g_independence"] = losses.layer_independence_loss(bg.float(), fg.float(), mask.float(), pairing)
            total = total + lc.gamma_indep * terms["g_independence"]
        if lc.equivariance:
            # Eq. (8) compares G(T^Z z, c) with T^X G(z, c). We read T^X G as eq. (3) defines it on a
            # generated image: transform the foreground and mask layers and re-compose over the
            # untouched background, not a warp of the flat composite -- the paper perturbs layers
            # everywhere else, and a warped composite would also move the background, which
            # G(z + Phi(eps), c) can only match by moving the background, the opposite of what we want.
            # The target T^X G(z, c) is detached by default (equi_detach_target): with gradients through
            # both sides, G can lower eq. (8) by shrinking the mask it transforms -- an empty mask makes
            # the target equal G's own background, the trivial zero of the loss.
            weight = losses.equivariance_weight(step, lc.gamma_equi, lc.equi_rampup_iters)
            target = fake.perturbed.detach() if lc.equi_detach_target else fake.perturbed
            unmoved = fake.layers.image if lc.equi_form == "relative" else None
            terms["g_equivariance"] = losses.equivariance_loss(self.pyramid, fake.walked, target, unmoved)
            equi = terms["g_equivariance"]
            if lc.gamma_equi_pixel > 0:  # added to eq. (8) under the same ramp-up (losses.pixel_equivariance_loss)
                terms["g_equi_pixel"] = losses.pixel_equivariance_loss(fake.walked, target, fake.layers.image)
                equi = equi + lc.gamma_equi_pixel * terms["g_equi_pixel"]
            if lc.moment_reg == "known":
                terms["g_moment_reg"] = losses.moment_regularizer_known(self.gather(fake.z),
                                                                        self.gather(fake.z_walked))
            else:
                terms["g_moment_reg"] = losses.moment_regularizer(self.gather(fake.z_walked))
            terms["gamma_equi"] = torch.tensor(weight)
            total = total + weight * equi + lc.gamma_reg * terms["g_moment_reg"]
        terms["g_total"] = total
        logs = {k: v.item() for k, v in terms.items()}
        logs.update(mask_statistics(fake.layers.mask))
        if lc.recovery:
            logs.update(health)
        return total, logs
