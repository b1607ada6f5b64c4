"""Does an image look like the ones a model was trained on? A distance in a pretrained feature space.

Why: a segmenter trained on one kind of picture (synthetic scenes, horse photos) still returns a mask for
anything, and for a picture unlike its training images that mask is confidently wrong -- a visitor who
uploads a street photo to the synthetic-scene model gets the sky as "foreground" and no hint why. The
generator and U-Net of this project know nothing about the outside world, so the yardstick is a frozen
ImageNet EfficientNet-Lite0 (``elgan.nets.features``): images are embedded in its 1280-d pooled space,
where "a photo of a horse" and "a synthetic textured blob" are far apart whatever their colours.

The statistics kept of the training images are compact (170 KB in the bundle at k = 32): the mean of
their L2-normalised embeddings, the top-k principal directions, and the mean squared residual outside
them. The distance of an embedding e (normalised to unit length) is

    d(e) = sqrt(|r|^2 / residual),  r = (e - mean) - B^T B (e - mean),

how much of the picture's features lies outside the directions along which the training images vary,
relative to how much of a training image's does (training images sit near 1). Measured on the shipped
models (docs/domain_check.md): this residual separates synthetic scenes from horse photos, and both from
other photos, completely; a Mahalanobis distance *within* the principal subspace does not (AUROC 0.02-0.8:
a picture of another kind projects weakly onto the training directions, so it looks "typical" there).
The threshold is chosen from held-out images of the training domain (a high quantile of their
distances), see ``training.domain_stats``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .data.base import eval_transform

ENTRY = "domain"  # bundle entry (a "network" of tensors only) holding the statistics
FEATURE = "efficientnet-lite0-imagenet-pooled-1280"  # the space the statistics live in (metadata tag)
DEFAULT_COMPONENTS = 32
DEFAULT_QUANTILE = 0.99
EMBED_DIM = 1280


class DomainError(ValueError):
    """Statistics that cannot be used: wrong shapes, too few images, non-finite values."""


@dataclass(frozen=True)
class DomainStats:
    """Statistics of a training set's embeddings, and the distance above which an image is 'unlike' it."""

    mean: torch.Tensor  # [D], of the unit-length training embeddings
    basis: torch.Tensor  # [k, D], orthonormal rows: the top-k principal directions
    residual: float  # mean squared norm of the training embeddings outside the basis
    size: int  # images are brought to size x size (the model's resolution) before embedding
    threshold: float = math.nan  # distances above it count as out of domain; nan: not chosen yet

    def tensors(self) -> dict[str, torch.Tensor]:
        """The bundle entry: float32 tensors (kept fp32 even in a half-precision bundle)."""
        return {"mean": self.mean.float(), "basis": self.basis.float(), "residual": torch.tensor(float(self.residual)),
                "threshold": torch.tensor(float(self.threshold)),
                "size": torch.tensor(int(self.size), dtype=torch.int64)}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> DomainStats:
        """Rebuild from a bundle entry, checking every shape: a hand-edited file must fail here, with a
        message, not later inside a matrix product."""
        need = {"mean", "basis", "residual", "threshold", "size"}
        if set(t) != need:
            raise DomainError(f"domain statistics need the tensors {sorted(need)}, got {sorted(t)}")
        mean, basis = t["mean"].float(), t["basis"].float()
        if mean.dim() != 1 or basis.dim() != 2 or basis.shape[1] != mean.shape[0] \
                or not 0 < basis.shape[0] < mean.shape[0]:
            raise DomainError(f"domain statistics have inconsistent shapes: mean {tuple(mean.shape)}, basis "
                              f"{tuple(basis.shape)}")
        if any(t[k].numel() != 1 for k in ("residual", "threshold", "size")):
            raise DomainError("domain statistics: residual, threshold and size must be scalars")
        residual, threshold, size = float(t["residual"]), float(t["threshold"]), int(t["size"])
        if not (torch.isfinite(mean).all() and torch.isfinite(basis).all()
                and math.isfinite(residual) and residual > 0 and 8 <= size <= 4096):
            raise DomainError("domain statistics hold non-finite or non-positive values")
        return cls(mean, basis, residual, size, threshold)

    def with_threshold(self, threshold: float) -> DomainStats:
        """The same statistics with the threshold chosen afterwards, from held-out distances."""
        return DomainStats(self.mean, self.basis, self.residual, self.size, float(threshold))

    def distance(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, D] embeddings -> [N] distances (about 1 for the training images themselves)."""
        centred = unit(embeddings) - self.mean
        outside = centred - (centred @ self.basis.T) @ self.basis
        return outside.pow(2).sum(1).div(self.residual).sqrt()

    def is_unlike(self, distance: float) -> bool:
        """True when a distance is past the threshold (never when no threshold was chosen)."""
        return math.isfinite(self.threshold) and distance > self.threshold


def unit(embeddings: torch.Tensor) -> torch.Tensor:
    """Embeddings scaled to unit length: the residual of their direction separates other kinds of picture
    with a wider margin than that of the raw features (docs/domain_check.md)."""
    x = embeddings.float()
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def fit_stats(embeddings: torch.Tensor, size: int, components: int = DEFAULT_COMPONENTS) -> DomainStats:
    """Principal directions of the training embeddings ([N, D]); N must exceed `components` + 1."""
    x = unit(embeddings).double()
    n, d = x.shape
    if n <= components + 1:
        raise DomainError(f"{n} images are too few for {components} components; need more than {components + 1}")
    mean = x.mean(0)
    centred = x - mean
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    basis = vh[:min(components, d - 1)]  # [k, D]
    outside = (centred - centred @ basis.T @ basis).pow(2).sum(1)
    residual = max(float(outside.mean()), 1e-12)
    return DomainStats(mean.float(), basis.float(), residual, int(size))


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float in [-1, 1], the range the feature net expects."""
    return images.float().div(127.5).sub(1.0)


_NET_LOCK = threading.Lock()


def feature_net(device: str | torch.device = "cpu") -> torch.nn.Module:
    """The frozen EfficientNet-Lite0, built once per process even when two requests ask at once (the app
    warms it in a thread at start: building takes seconds, a distance then about 60 ms on one CPU core).
    FeatureNetMissing (a RuntimeError) when its package is not installed."""
    from .nets.features import pretrained_lite0  # lazy: timm is imported only when a distance is wanted

    with _NET_LOCK:
        return pretrained_lite0(device)


@torch.inference_mode()
def embed(images: torch.Tensor, batch: int = 32, device: str | torch.device = "cpu",
          progress: bool = False) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> [N, 1280] pooled EfficientNet-Lite0 features (on the CPU, float32)."""
    net = feature_net(device)
    out = []
    for i in range(0, images.shape[0], batch):
        out.append(net.embed(to_model_input(images[i:i + batch]).to(device)).float().cpu())
        if progress:
            print(f"\r  embedded {min(i + batch, images.shape[0])}/{images.shape[0]}", end="", flush=True)
    if progress:
        print()
    return torch.cat(out) if out else torch.zeros(0, EMBED_DIM)


def image_distance(stats: DomainStats, image: Image.Image, device: str | torch.device = "cpu") -> float:
    """One picture's distance, after the training data's own transform (shorter side -> size, centre crop)."""
    x = eval_transform(image, stats.size)[None]
    return float(stats.distance(embed(x, device=device))[0])


def choose_threshold(in_domain: torch.Tensor | np.ndarray, quantile: float = DEFAULT_QUANTILE) -> float:
    """The `quantile` of held-out in-domain distances: about 1 - quantile of such images get a warning."""
    values = np.asarray(in_domain, np.float64)
    if values.size == 0 or not 0 < quantile < 1:
        raise DomainError(f"need held-out distances and a quantile in (0, 1), got {values.size}, {quantile}")
    return float(np.quantile(values, quantile))


def error_rates(threshold: float, in_domain: torch.Tensor | np.ndarray,
                out_of_domain: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """(false warnings: in-domain images past the threshold, misses: out-of-domain images within it)."""
    inside, outside = np.asarray(in_domain, np.float64), np.asarray(out_of_domain, np.float64)
    false = float((inside > threshold).mean()) if inside.size else math.nan
    missed = float((outside <= threshold).mean()) if outside.size else math.nan
    return false, missed


def cross_validated_false_warnings(in_domain: torch.Tensor | np.ndarray, quantile: float = DEFAULT_QUANTILE,
                                   folds: int = 5, seed: int = 0) -> float:
    """The false-warning rate of the quantile rule on images that did not choose the threshold.

    Reading it off the same distances that set the threshold would give 1 - quantile by construction;
    here each fold is judged by the threshold of the other folds.
    """
    values = np.asarray(in_domain, np.float64)
    order = np.random.default_rng(seed).permutation(values.size)
    wrong = 0
    for f in range(folds):
        held = order[f::folds]
        rest = np.setdiff1d(order, held)
        wrong += int((values[held] > choose_threshold(values[rest], quantile)).sum())
    return wrong / max(1, values.size)


def auroc(in_domain: torch.Tensor | np.ndarray, out_of_domain: torch.Tensor | np.ndarray) -> float:
    """Probability that an out-of-domain image is farther than an in-domain one (ties count half)."""
    a, b = np.asarray(in_domain, np.float64), np.asarray(out_of_domain, np.float64)
    if not a.size or not b.size:
        return math.nan
    return float((b[:, None] > a[None]).mean() + 0.5 * (b[:, None] == a[None]).mean())
