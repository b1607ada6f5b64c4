"""T^X: identity at eps = 0, the paper's ranges, and a hand rotation of a test pattern."""

import math

import torch

from elgan.config import PerturbConfig
from elgan.perturb import AffineParams, eps_to_params, forward_matrix, sampling_theta, transform_layers, warp


def _params(tx=0.0, ty=0.0, deg=0.0, log2s=0.0, n=1):
    f = lambda v: torch.full((n,), float(v))  # noqa: E731
    return AffineParams(f(tx), f(ty), f(math.radians(deg)), f(log2s))


def test_identity_at_zero():
    cfg = PerturbConfig()
    x = torch.rand(2, 3, 16, 16)
    m = torch.rand(2, 1, 16, 16)
    fg, mask = transform_layers(x, m, eps_to_params(torch.zeros(2, cfg.eps_dim), cfg))
    torch.testing.assert_close(fg, x)
    torch.testing.assert_close(mask, m)


def test_eps_maps_linearly_onto_paper_ranges():
    cfg = PerturbConfig()
    assert cfg.eps_names == ("tx", "ty", "rotation", "scale")
    p = eps_to_params(torch.tensor([[1.0, -1.0, 1.0, -1.0]]), cfg)
    assert p.tx.item() == 0.125 and p.ty.item() == -0.125
    assert math.isclose(p.angle.item(), math.radians(15), rel_tol=1e-6)
    assert math.isclose(p.log2_scale.item(), -0.2, rel_tol=1e-6)
    translation_only = PerturbConfig(scale=False, rotate=False)
    assert translation_only.eps_dim == 2
    p = eps_to_params(torch.tensor([[0.5, 0.5]]), translation_only)
    assert p.angle.item() == 0 and p.log2_scale.item() == 0


def test_hand_rotation_of_a_test_pattern():
    """90 deg (positive = clockwise on screen) equals torch.rot90 with k=-1 on an even-sized grid."""
    x = torch.arange(64.0).view(1, 1, 8, 8)
    out = warp(x, _params(deg=90))
    torch.testing.assert_close(out, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-4, rtol=0)


def test_translation_moves_content_right_and_down():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 4, 4] = 1
    out = warp(x, _params(tx=0.25, ty=0.125))  # a quarter and an eighth of the side
    assert out[0, 0].argmax().item() == (4 + 2) * 16 + (4 + 4)


def test_scale_grows_the_object():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1
    assert warp(x, _params(log2s=1)).sum() > 3.5 * x.sum()


def test_theta_is_the_inverse_of_the_forward_matrix():
    p = _params(tx=0.1, ty=-0.05, deg=12, log2s=0.15, n=3)
    a = forward_matrix(p)
    theta = torch.cat([sampling_theta(p), torch.tensor([[[0.0, 0, 1]]]).expand(3, 1, 3)], 1)
    torch.testing.assert_close(theta @ a, torch.eye(3).expand(3, 3, 3), atol=1e-6, rtol=0)


def test_differentiable():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    m = torch.rand(2, 1, 8, 8, requires_grad=True)
    eps = torch.rand(2, 4, requires_grad=True)
    fg, mask = transform_layers(x, m, eps_to_params(eps, PerturbConfig()))
    (fg.sum() + mask.sum()).backward()
    assert x.grad is not None and m.grad is not None and eps.grad is not None
