"""Frechet distance between two sets of embeddings (FID when the embedding is Inception-v3's pool3).

Offline, the embedding is the project's RotNet and the number is labelled "FD-RotNet": it ranks
checkpoints of one run (model selection, as the paper does with FID) but is not comparable to FID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and covariance [D, D] of features [N, D], in float64."""
    f = feats.to(torch.float64)
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / max(1, f.shape[0] - 1)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^1/2), with tr (C1 C2)^1/2 computed from the symmetric
    matrix C1^1/2 C2 C1^1/2 (same eigenvalues, and eigh is stable where sqrtm of a product is not)."""
    w, v = torch.linalg.eigh(cov1)
    s1 = (v * w.clamp_min(0).sqrt()) @ v.T
    m = s1 @ cov2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * tr_sqrt)


@torch.no_grad()
def embed_batches(embed: Callable[[torch.Tensor], torch.Tensor], batches: Iterator[torch.Tensor]) -> torch.Tensor:
    return torch.cat([embed(b).float().cpu() for b in batches])


def fd_between(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))
