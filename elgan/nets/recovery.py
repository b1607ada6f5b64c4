"""E_pi: the c_sup-recovery network of eq. (11), which names the super-category from the generated mask.

Appendix A: an independent network (not D's trunk) that reads only the mask pi, so the mask must carry
c_sup -- the shape follows the super-category. Spectral norm on every layer, orthogonal initialisation,
and the same fixed temperature on its logits as D's E_x head (``recovery_gain``, see discriminator.py).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DiscriminatorConfig
from .discriminator import down_trunk, orthogonal_init, sn_linear


class SuperCategoryRecovery(nn.Module):
    """E_pi: mask [N, 1, H, W] -> logits over super-categories [N, n_super]."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        trunk, ch = down_trunk(1, max(4, cfg.width // 2), cfg.size)
        self.net = nn.Sequential(trunk, nn.Flatten(), sn_linear(ch * 16, cfg.n_super))
        orthogonal_init(self)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.cfg.recovery_gain * self.net(mask * 2 - 1)
