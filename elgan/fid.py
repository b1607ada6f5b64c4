"""Frechet distance between two sets of embeddings (FID when the embedding is Inception-v3's pool3).

Offline, the default embedding is the frozen ImageNet EfficientNet-Lite0 (installed with its weights) and
the number is labelled "FD-Lite0": the same space for every run, so runs compare, but not FID. The
project's RotNet ("FD-RotNet", ``--fd-net rotnet``) ranks the checkpoints of one run only.

The standard way, when the user supplies Inception-v3 weights (``--inception PATH``: the file
``weights-inception-2015-12-05-6726825d.pth`` that torch-fidelity itself would download): FID,
precision and recall computed by torch-fidelity (an optional dependency, imported only then) from
that local file, with its TensorFlow-compatible Inception, so the numbers compare with published FIDs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .config import ConfigError


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


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255], rounded (how a saved PNG of the sample would read)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


class _Images(torch.utils.data.Dataset):
    """uint8 [N, 3, H, W] as the per-image dataset torch-fidelity reads (it resizes to 299 itself)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def check_inception(weights: str | Path) -> None:
    """Fail at the start of a run, not at its first evaluation hours later, if --inception cannot work."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ConfigError("FID with --inception needs the optional package torch-fidelity (pip install "
                          "torch-fidelity); without --inception, FD-Lite0 (or FD-RotNet) is used") from None
    if not Path(weights).is_file():
        raise FileNotFoundError(f"Inception weights not found: {weights}")


def inception_metrics(real: torch.Tensor, fake: torch.Tensor, weights: str | Path,
                      device: torch.device) -> dict[str, float]:
    """{"FID", "precision", "recall"} of generated vs real uint8 images [N, 3, H, W], with torch-fidelity's
    Inception-v3 loaded from `weights` (no download). Precision/recall (Kynkaanniemi et al.) use the
    same Inception pool features as FID, not torch-fidelity's VGG default, so one network is loaded."""
    check_inception(weights)
    import torch_fidelity

    # input1 is the real set: torch-fidelity's precision/recall convention (precision = share of fakes
    # inside the real manifold). Keys by value: their constant names changed between releases.
    m = torch_fidelity.calculate_metrics(
        input1=_Images(real), input2=_Images(fake), fid=True, prc=True, cuda=device.type == "cuda",
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(weights),
        cache=False, verbose=False)
    return {"FID": float(m["frechet_inception_distance"]), "precision": float(m["precision"]),
            "recall": float(m["recall"])}
