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


def background_fake(background_logits: torch.Tensor) -> torch.Tensor:
    """E max(0, 1 + D(G_b(z))): D learns that the background layer alone is not a real image.

    Not in the paper (FineGAN's counterpart trains its background against real background patches,
    which needs boxes). Once D rejects backgrounds alone, a composite whose background already carries
    the object scores like one, so G gains by drawing the object in the foreground layer."""
    return F.relu(1 + background_logits).mean()


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


def mask_ceiling_loss(areas: torch.Tensor, ceiling: float) -> torch.Tensor:
    """max(0, mean_i |pi_i|_1 / HW - ceiling) over a batch's mask areas [N]: a prior on the *average* object
    size, the counterpart of PerturbGAN's floor against the all-foreground solution (the paper's trivial
    solution i). Not in the paper. The batch mean leaves single large objects free; only a generator
    whose masks cover more than `ceiling` on average pays."""
    return F.relu(areas.mean() - ceiling)


def layer_independence_loss(background: torch.Tensor, foreground: torch.Tensor, mask: torch.Tensor,
                            pairing: torch.Tensor) -> torch.Tensor:
    """ILSGAN's anti-leakage term (its default, CLUB with a fixed Laplace): an upper bound on the mutual
    information between what each layer hides and what the other shows. For the background under the
    mask (pi * b) against the foreground that covers it (pi * f), and for the foreground outside the
    mask ((1 - pi) * f) against the visible background ((1 - pi) * b):
    mean |hidden_j - visible_i|_1 - mean |hidden_i - visible_i|_1, where j = pairing[i] is another sample.
    It is large when a background hides a copy of its own foreground (the object painted into the
    background layer), about zero when the hidden part says nothing about the visible one. Not in the
    paper; gradients reach both layers and the mask, as in ILSGAN's default. `pairing` [N] must not map
    any sample to itself (e.g. torch.roll(torch.arange(N), 1))."""
    total = background.new_zeros(())
    for hidden, visible in ((background * mask, foreground * mask),
                            (foreground * (1 - mask), background * (1 - mask))):
        same = (hidden - visible).abs().flatten(1).mean(1)  # [N]
        other = (hidden[pairing] - visible).abs().flatten(1).mean(1)  # [N]
        total = total + other.mean() - same.mean()
    return total


def moment_regularizer(z_transformed: torch.Tensor) -> torch.Tensor:
    """L_reg = ||mean_i T z_i||^2 + ||mean_i (T z_i)^2 - 1||^2 over a batch [N, z_dim] (section 3.3):
    keeps the walked codes inside the N(0, I) shell the generator was trained on."""
    first = z_transformed.mean(0)
    second = z_transformed.pow(2).mean(0)
    return first.pow(2).sum() + (second - 1).pow(2).sum()


def moment_regularizer_known(z: torch.Tensor, z_transformed: torch.Tensor) -> torch.Tensor:
    """L_reg with z's own moments taken as known (E z = 0, E z^2 = 1) instead of estimated, [N, z_dim] each.

    With T z = z + s, the moments L_reg constrains are E s and E (2 z s + s^2); the batch form adds the
    sampling noise of mean z and mean z^2 - 1 (about z_dim * 3 / N: 9.4 at N = 32, z_dim = 100), a term
    that does not depend on Phi but whose noisy gradient drowns the signal that moves Phi."""
    shift = z_transformed - z
    return shift.mean(0).pow(2).sum() + (2 * z * shift + shift.pow(2)).mean(0).pow(2).sum()


def normalize_features(f: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit-normalise each spatial feature vector over channels (Gamma_u in eq. 8, as in LPIPS)."""
    return f / (f.pow(2).sum(1, keepdim=True) + eps).sqrt()


def perceptual_distances(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_percp(x_i, y_i) per sample [N]: sum_l 1/|Omega_l| sum_u ||Gamma_u^(l)(x) - Gamma_u^(l)(y)||^2.

    The feature lists are [Gamma^(0), Gamma^(1), ...]; Gamma^(0) is the input image itself (not
    normalised), deeper entries are normalised here."""
    assert len(feats_x) == len(feats_y) and len(feats_x) > 0
    total = feats_x[0].new_zeros(feats_x[0].shape[0])
    for level, (fx, fy) in enumerate(zip(feats_x, feats_y, strict=True)):
        if level > 0:
            fx, fy = normalize_features(fx), normalize_features(fy)
        total = total + (fx - fy).pow(2).sum(1).flatten(1).mean(1)  # mean over positions u
    return total


def perceptual_distance(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_percp(x, y) of eq. (8), averaged over the batch."""
    return perceptual_distances(feats_x, feats_y).mean()


def equivariance_weight(step: int, gamma_equi: float, rampup_iters: int) -> float:
    """gamma_e(t) = min(1, t / t_1) * gamma_equi: enforce equivariance once the layers are stable."""
    if rampup_iters <= 0:
        return gamma_equi
    return min(1.0, step / rampup_iters) * gamma_equi


def pixel_equivariance_loss(walked: torch.Tensor, transformed: torch.Tensor, unmoved: torch.Tensor,
                            floor: float = 1e-3) -> torch.Tensor:
    """Eq. (7) read in pixels, relative: mean_i |G(T^Z z_i) - T^X G(z_i)|_1 / |G(z_i) - T^X G(z_i)|_1.

    An addition to eq. (8), not in the paper: the normalised features of L_percp tolerate a texture that
    stays put while the mask moves (a RotNet's features shift little when the texture is regular), so the
    walk can satisfy eq. (8) and still leave the object's inside where it was. In pixels, as
    elgan.equivariance measures the walk, a walk that does nothing costs 1 and the exact move costs 0."""
    num = (walked - transformed).abs().flatten(1).mean(1)
    den = (unmoved - transformed).abs().flatten(1).mean(1)
    return (num / (den + floor)).mean()


def equivariance_loss(pyramid, walked: torch.Tensor, transformed: torch.Tensor,
                      unmoved: torch.Tensor | None = None, floor: float = 1e-3) -> torch.Tensor:
    """Eq. (8): L_percp(G(T^Z z, c), T^X G(z, c)); `pyramid` maps images to [Gamma^(0), Gamma^(1), ...].

    With `unmoved` = G(z, c), the relative form: each sample's distance divided by how far its unmoved
    image is from the target, L_percp(G(T^Z z), T^X G(z)) / L_percp(G(z), T^X G(z)). Eq. (8) as written
    has a cheap zero: a walk that does nothing costs L_percp(G(z), T^X G(z)), which a smaller object
    lowers, so G can lower it by shrinking the mask instead of learning the walk. The relative form costs
    1 for a walk that does nothing at any object size; only a walk that makes the move lowers it.
    All images go through the feature net as one batch (fewer kernel launches)."""
    images = [walked, transformed] if unmoved is None else [walked, transformed, unmoved]
    feats = pyramid(torch.cat(images))
    n = walked.shape[0]
    part = [[f[i * n:(i + 1) * n] for f in feats] for i in range(len(images))]
    if unmoved is None:
        return perceptual_distance(part[0], part[1])
    return (perceptual_distances(part[0], part[1]) / (perceptual_distances(part[2], part[1]) + floor)).mean()
