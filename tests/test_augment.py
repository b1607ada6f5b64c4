"""Batched augmentations: flips, RandomResizedCrop and DiffAugment (shape, determinism, gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from elgan.data.augment import diff_augment, parse_policy, random_hflip, random_resized_crop


def _x(n: int = 6, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _g(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_hflip() -> None:
    x = _x()
    assert torch.equal(random_hflip(random_hflip(x, _g(3)), _g(3)), x)  # same flips twice = identity
    assert torch.equal(random_hflip(x, p=1.0), x.flip(3))
    assert torch.equal(random_hflip(x, p=0.0), x)
    y = random_hflip(_x(64), _g())
    flipped = (y != _x(64)).flatten(1).any(1)
    assert 0 < int(flipped.sum()) < 64


def test_rrc_identity() -> None:
    x = _x()
    assert torch.allclose(random_resized_crop(x, scale=(1, 1), ratio=(1, 1), generator=_g()), x, atol=1e-5)
    rect = _x(h=12, w=20)  # no square crop of full area fits: torchvision's fallback, a centre crop
    y = random_resized_crop(rect, scale=(1, 1), ratio=(1, 1), generator=_g())
    ref = F.interpolate(rect[:, :, :, 4:16], size=(12, 20), mode="bilinear", align_corners=False)
    assert y.shape == rect.shape
    assert torch.allclose(y[:, :, 1:-1, 2:-2], ref[:, :, 1:-1, 2:-2], atol=1e-5)


def test_rrc_is_a_resized_crop() -> None:
    x = _x(n=4)
    y = random_resized_crop(x, scale=(0.25, 0.25), ratio=(1, 1), generator=_g())  # 8x8 crops
    for n in range(4):
        crops = [F.interpolate(x[n:n + 1, :, i:i + 8, j:j + 8], size=16, mode="bilinear", align_corners=False)
                 for i in range(9) for j in range(9)]
        errs = [(y[n, :, 2:-2, 2:-2] - c[0, :, 2:-2, 2:-2]).abs().max() for c in crops]
        assert min(errs) < 1e-5


def test_rrc_deterministic_and_differentiable() -> None:
    x = _x().requires_grad_(True)
    a = random_resized_crop(x, generator=_g(5))
    b = random_resized_crop(x, generator=_g(5))
    assert torch.equal(a, b) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        random_resized_crop(x, scale=(0.9, 0.1))


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment(policy: str) -> None:
    x = _x().requires_grad_(True)
    a = diff_augment(x, policy, _g(7))
    b = diff_augment(x, policy, _g(7))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, policy, _g(8)))
    (a * torch.randn_like(a)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_with_zero_padding() -> None:
    x = _x(n=8, h=8, w=8)  # shift range: int(8 / 8 + 0.5) = 1 pixel
    y = diff_augment(x, "translation", _g())
    for n in range(8):
        found = False
        for ty in (-1, 0, 1):
            for tx in (-1, 0, 1):
                ref = torch.zeros_like(x[n])
                src = x[n, :, max(0, -ty):8 - max(0, ty), max(0, -tx):8 - max(0, tx)]
                ref[:, max(0, ty):8 - max(0, -ty), max(0, tx):8 - max(0, -tx)] = src
                found |= torch.equal(y[n], ref)
        assert found


def test_cutout_zeroes_at_most_a_quarter() -> None:
    x = _x(n=16) + 3  # no zeros in x
    y = diff_augment(x, "cutout", _g())
    zero = y == 0
    assert torch.equal(y[~zero], x[~zero])
    frac = zero[:, 0].flatten(1).float().mean(1)
    assert (frac <= 0.25).all() and (frac > 0).any()


def test_policy_parsing() -> None:
    x = _x()
    assert torch.equal(diff_augment(x, ""), x)
    assert parse_policy("none") == () and parse_policy(" color , cutout") == ("color", "cutout")
    with pytest.raises(ValueError, match="bogus"):
        diff_augment(x, "color,bogus")
