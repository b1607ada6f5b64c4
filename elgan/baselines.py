"""Two trivial segmentation baselines: the floor any learned method must clear.

* ``centred_ellipse``: the same centred ellipse for every image. Its semi-axes are a fixed fraction
  ``ELLIPSE_AXES = (0.33, 0.30)`` of the image side: the mean half-width and half-height of the object
  bounding boxes of the embedded synthetic set (measured on 1000 train images at 64 px; the ellipse
  covers 31% of the image, objects 26% on average). It measures how much a dataset rewards "the object
  is in the middle".
* ``kmeans``: 2-cluster colour k-means per image (RGB, Lloyd iterations from a deterministic darkest /
  brightest initialisation). Without labels the cluster that touches the border less is called the
  foreground (``kmeans_masks``); the reported baseline is the optimistic ``kmeans_best_polarity``, which
  takes per image whichever of the two assignments has the higher IoU against the truth. It measures
  how much colour alone separates object from background.

Scores are dataset-level foreground IoU etc. from ``elgan.metrics.segmentation_scores``.
"""

from __future__ import annotations

import torch

from elgan.metrics import SegmentationScores, segmentation_scores

ELLIPSE_AXES = (0.33, 0.30)  # (horizontal, vertical) semi-axes as fractions of the image side


def centred_ellipse(n: int, size: int, axes: tuple[float, float] = ELLIPSE_AXES) -> torch.Tensor:
    """bool [n, 1, size, size]: the same centred ellipse (pixel centres inside) for every image."""
    if n < 0 or size < 1:
        raise ValueError(f"need n >= 0 and size >= 1, got n={n}, size={size}")
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5
    inside = (c[None, :] / axes[0]) ** 2 + (c[:, None] / axes[1]) ** 2 <= 1.0
    return inside.expand(n, 1, size, size).clone()


def _kmeans_labels(images: torch.Tensor, iters: int) -> torch.Tensor:
    """bool [N, H*W]: True where a pixel belongs to cluster 1 (initialised at the brightest pixel)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}")
    x = images.flatten(2).transpose(1, 2).to(torch.float32)  # [N, P, 3]
    lum = x @ torch.tensor([0.299, 0.587, 0.114])
    idx = torch.stack([lum.argmin(1), lum.argmax(1)], 1)  # deterministic init: darkest and brightest
    centres = torch.gather(x, 1, idx[..., None].expand(-1, -1, 3))  # [N, 2, 3]
    labels = torch.zeros(x.shape[:2], dtype=torch.bool)
    for _ in range(max(1, iters)):
        d = torch.cdist(x, centres)  # [N, P, 2]
        labels = d[..., 1] < d[..., 0]
        w1 = labels[..., None].to(x.dtype)
        n1, n0 = w1.sum(1), (1 - w1).sum(1)
        c1 = (x * w1).sum(1) / n1.clamp_min(1)
        c0 = (x * (1 - w1)).sum(1) / n0.clamp_min(1)
        # An emptied cluster keeps its old centre rather than collapsing to the origin.
        centres = torch.stack([torch.where(n0 > 0, c0, centres[:, 0]),
                               torch.where(n1 > 0, c1, centres[:, 1])], 1)
    return labels


def kmeans_masks(images: torch.Tensor, iters: int = 10) -> torch.Tensor:
    """bool [N, 1, H, W]: 2-means colour clusters; the cluster with the smaller share of the image border
    is the foreground (the usual label-free guess)."""
    n, _, h, w = images.shape
    lab = _kmeans_labels(images, iters).view(n, h, w)
    border = torch.zeros(h, w, dtype=torch.bool)
    border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
    frac1 = (lab & border).flatten(1).sum(1).float() / border.sum()
    flip = frac1 > 0.5
    return (lab ^ flip[:, None, None])[:, None]


def kmeans_best_polarity(images: torch.Tensor, masks: torch.Tensor, iters: int = 10) -> torch.Tensor:
    """bool [N, 1, H, W]: 2-means clusters with, per image, the cluster -> foreground assignment that
    scores the higher IoU against the truth (an upper bound on any polarity rule)."""
    n, _, h, w = images.shape
    lab = _kmeans_labels(images, iters).view(n, 1, h, w)
    t = masks.view(n, 1, h, w).bool()

    def iou(p: torch.Tensor) -> torch.Tensor:
        inter = (p & t).flatten(1).sum(1).float()
        union = (p | t).flatten(1).sum(1).float()
        return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))

    flip = iou(~lab) > iou(lab)
    return lab ^ flip[:, None, None, None]


def baseline_scores(images: torch.Tensor, masks: torch.Tensor, iters: int = 10,
                    convention: str = "dataset") -> dict[str, SegmentationScores]:
    """{"centred_ellipse": ..., "kmeans": ...} (k-means with its best polarity) on one image set."""
    n, _, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    return {
        "centred_ellipse": segmentation_scores(centred_ellipse(n, h), masks, convention),
        "kmeans": segmentation_scores(kmeans_best_polarity(images, masks, iters), masks, convention),
    }
