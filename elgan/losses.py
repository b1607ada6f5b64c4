"""Every loss term of the paper, one pure function each (eqs. 6-11 and PerturbGAN's mask-size loss).

Each function takes tensors and returns a scalar; weighting and phase logic live in
elgan.gan_loss.ElganLoss, so a term can be tested (and reused) on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_adv^(D) = E max(0, 1 - D(x)) + E max(0, 1 + D(T^X G(z, c)))  (section 3.3)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_adv^(G) = -E D(T^X G(z, c))."""
    return -fake_logits.mean()


def recovery_loss(logits: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """-E log E(code | input): cross-entropy of a recovered private code (eq. 6; eq. 11 sums two)."""
    return F.cross_entropy(logits, code)


def binarization_loss(mask: torch.Tensor) -> torch.Tensor:
    """L_b = E min(pi, 1 - pi): zero exactly when the mask is binary."""
    return torch.minimum(mask, 1 - mask).mean()


def mask_size_loss(mask: torch.Tensor, eta: float) -> torch.Tensor:
    """PerturbGAN's L_size = E max(0, eta - |pi|_1 / HW): penalises masks smaller than eta (config A)."""
    return F.relu(eta - mask.flatten(1).mean(1)).mean()


def moment_regularizer(z_transformed: torch.Tensor) -> torch.Tensor:
    """L_reg = ||mean_i T z_i||^2 + ||mean_i (T z_i)^2 - 1||^2 over a batch [N, z_dim] (section 3.3):
    keeps the walked codes inside the N(0, I) shell the generator was trained on."""
    first = z_transformed.mean(0)
    second = z_transformed.pow(2).mean(0)
    return first.pow(2).sum() + (second - 1).pow(2).sum()


def normalize_features(f: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit-normalise each spatial feature vector over channels (Gamma_u in eq. 8, as in LPIPS)."""
    return f / (f.pow(2).sum(1, keepdim=True) + eps).sqrt()


def perceptual_distance(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_percp(x, y) = sum_l 1/|Omega_l| sum_u ||Gamma_u^(l)(x) - Gamma_u^(l)(y)||^2, averaged over the batch.

    The feature lists are [Gamma^(0), Gamma^(1), ...]; Gamma^(0) is the input image itself (not
    normalised), deeper entries are normalised here."""
    assert len(feats_x) == len(feats_y) and len(feats_x) > 0
    total = feats_x[0].new_zeros(())
    for level, (fx, fy) in enumerate(zip(feats_x, feats_y, strict=True)):
        if level > 0:
            fx, fy = normalize_features(fx), normalize_features(fy)
        total = total + (fx - fy).pow(2).sum(1).mean()  # mean over batch and positions u
    return total


def equivariance_weight(step: int, gamma_equi: float, rampup_iters: int) -> float:
    """gamma_e(t) = min(1, t / t_1) * gamma_equi: enforce equivariance once the layers are stable."""
    if rampup_iters <= 0:
        return gamma_equi
    return min(1.0, step / rampup_iters) * gamma_equi


def equivariance_loss(pyramid, walked: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """Eq. (8): L_percp(G(T^Z z, c), T^X G(z, c)); `pyramid` maps images to [Gamma^(0), Gamma^(1), ...].

    Both images go through the feature net as one batch (half the kernel launches)."""
    feats = pyramid(torch.cat([walked, transformed]))
    n = walked.shape[0]
    return perceptual_distance([f[:n] for f in feats], [f[n:] for f in feats])
