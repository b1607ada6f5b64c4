"""Phi: the latent transformation model T_eps^Z z = z + Phi(eps) (section 3.2, Fig. A.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PhiConfig
from .generator import orthogonal_init


class LatentTransform(nn.Module):
    """A 4-layer MLP eps in [-1, 1]^d_eps -> a shift of the first d_T dims of z (appendix A: restricting
    the walk to a subspace stabilises training); the other z_dim - d_T dims are left untouched."""

    def __init__(self, cfg: PhiConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.mlp = nn.Sequential(nn.Linear(cfg.eps_dim, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2),
                                 nn.Linear(h, h), nn.LeakyReLU(0.2), nn.Linear(h, cfg.t_dim))
        orthogonal_init(self)

    def shift(self, eps: torch.Tensor) -> torch.Tensor:
        """Phi(eps) - Phi(0), padded to z's size: [N, d_eps] -> [N, z_dim].

        Subtracting Phi(0) makes T_0^Z the identity exactly, as T_0^X is: the equivariance loss would
        otherwise have to learn it, and the app's sliders at 0 would not show the sample itself.
        """
        out = self.mlp(torch.cat([eps, eps.new_zeros(1, eps.shape[1])]))  # one MLP call for both
        shift = out[:-1] - out[-1:]
        if self.cfg.walk == "fixed_length":
            # Phi chooses the direction only; the length is gain * |eps|. Measured: a free walk collapses
            # to ~0 early in GAN training (any walk changes the content of a G not yet equivariant, so
            # eq. (8) first rewards no walk), after which G never learns the move.
            shift = self.cfg.gain * eps.norm(dim=1, keepdim=True) * shift / (shift.norm(dim=1, keepdim=True) + 1e-8)
        else:
            shift = self.cfg.gain * shift
        return F.pad(shift, (0, self.cfg.z_dim - self.cfg.t_dim))

    def forward(self, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return z + self.shift(eps)  # T_eps^Z z
