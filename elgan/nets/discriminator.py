"""Discriminator D with the c-recovery head E_x on its shared trunk (E_pi: elgan.nets.recovery).

Appendix A: E_x shares D's blocks (InfoGAN's amortised posterior); spectral norm on every layer for
stability, orthogonal initialisation as in the generator (written to the spectral-normed
layers' ``original`` weights, see generator.orthogonal_init). ``build_discriminator`` returns this D or
the projected one (elgan.nets.projected) as the config says.

Spectral norm bounds every layer's gain by 1, so a fresh network's logits have a standard deviation
of about 0.01: fine for the hinge loss, whose gradient does not depend on scale, but a 200-way
cross-entropy then sits at log 200 for thousands of steps (seen here, and in the peers' probe). The
recovery logits are therefore multiplied by a fixed `recovery_gain` -- a temperature, which leaves
every layer spectrally normalised.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..config import DiscriminatorConfig
from .generator import orthogonal_init


def sn_conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, s, p))


def sn_linear(cin: int, cout: int) -> nn.Module:
    return spectral_norm(nn.Linear(cin, cout))


def down_trunk(cin: int, width: int, size: int) -> tuple[nn.Sequential, int]:
    """Strided 4x4 SN convs with LeakyReLU from `size` down to 4x4; returns (trunk, channels at 4x4)."""
    n_down = int(math.log2(size // 4))
    layers: list[nn.Module] = []
    ch = cin
    for i in range(n_down):
        out = min(16 * width, width * 2**i)
        layers += [sn_conv(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        ch = out
    layers += [sn_conv(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers), ch


class DiscriminatorOutput(NamedTuple):
    logits: torch.Tensor  # [N] real/fake score (hinge loss)
    category_logits: torch.Tensor  # [N, n_categories] E_x(c | x)


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk, ch = down_trunk(3, cfg.width, cfg.size)
        self.adv_head = sn_linear(ch * 16, 1)
        self.category_head = nn.Sequential(sn_conv(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Flatten(),
                                           sn_linear(ch * 16, cfg.n_categories))
        orthogonal_init(self)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        h = self.trunk(x)  # [N, C, 4, 4]
        return DiscriminatorOutput(self.adv_head(h.flatten(1)).squeeze(1),
                                   self.cfg.recovery_gain * self.category_head(h))


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """The D that `cfg.kind` names: the paper's (below) or the projected one (elgan.nets.projected)."""
    if cfg.kind == "projected":
        from .projected import ProjectedDiscriminator

        return ProjectedDiscriminator(cfg)
    return Discriminator(cfg)
