"""Trivial baselines: their shapes, k-means on hand-made cases, and that the synthetic set defeats them."""

from __future__ import annotations

import math

import torch

from elgan.baselines import ELLIPSE_AXES, baseline_scores, centred_ellipse, kmeans_best_polarity, kmeans_masks
from elgan.data.synthetic import generate_synthetic


def test_centred_ellipse_shape() -> None:
    e = centred_ellipse(3, 64)
    assert e.shape == (3, 1, 64, 64) and e.dtype == torch.bool
    assert torch.equal(e[0], e[2])
    assert torch.equal(e, e.flip(-1)) and torch.equal(e, e.flip(-2))  # centred
    area = e[0].float().mean().item()
    assert abs(area - math.pi * ELLIPSE_AXES[0] * ELLIPSE_AXES[1]) < 0.01
    assert e[0, 0, 32, 32] and not e[0, 0, 0, 0]
    wide = e[0, 0].any(0).sum().item()
    tall = e[0, 0].any(1).sum().item()
    assert wide >= tall  # horizontal semi-axis 0.33 >= vertical 0.30


def _two_colour(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Red square on a blue background, with a little noise."""
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(n, 3, 16, 16)
    img[:, 2] = 200
    img[:, :, 4:10, 5:12] = torch.tensor([220.0, 30, 20])[:, None, None]
    img = (img + torch.randint(-10, 10, img.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    mask = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    mask[:, :, 4:10, 5:12] = 1
    return img, mask


def test_kmeans_hand_case() -> None:
    img, mask = _two_colour()
    assert torch.equal(kmeans_masks(img), mask.bool())  # the border-avoiding cluster is the square
    best = kmeans_best_polarity(img, mask)
    assert torch.equal(best, mask.bool())
    # Truth given as the complement: best polarity follows it.
    assert torch.equal(kmeans_best_polarity(img, 1 - mask), ~mask.bool())


def test_baselines_defeated_by_synthetic() -> None:
    images, masks, _ = generate_synthetic("test", 32, n=300)
    scores = baseline_scores(torch.from_numpy(images), torch.from_numpy(masks))
    assert set(scores) == {"centred_ellipse", "kmeans"}
    for name, s in scores.items():
        assert s.convention == "dataset" and s.n == 300
        assert 0.2 < s.iou < 0.6, (name, s)
