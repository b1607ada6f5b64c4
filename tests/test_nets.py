"""Shapes and code dependencies of every ELGAN network at 32^2 and 64^2."""

import dataclasses

import pytest
import torch

from elgan.config import gan_config
from elgan.nets.discriminator import Discriminator
from elgan.nets.generator import LayeredGenerator, compose
from elgan.nets.phi import LatentTransform
from elgan.nets.recovery import SuperCategoryRecovery


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    torch.manual_seed(0)
    cfg = gan_config(size, "E", width=4)
    G, D = LayeredGenerator(cfg.generator), Discriminator(cfg.discriminator)
    E_pi, phi = SuperCategoryRecovery(cfg.discriminator), LatentTransform(cfg.phi)
    z, c = G.sample_codes(3)
    layers = G(z, c)
    for t, ch in zip(layers, (3, 3, 1, 3), strict=True):
        assert t.shape == (3, ch, size, size)
    assert layers.background.abs().max() <= 1 and layers.foreground.abs().max() <= 1
    assert 0 <= layers.mask.min() and layers.mask.max() <= 1
    torch.testing.assert_close(layers.image, compose(layers.background, layers.foreground, layers.mask))
    out = D(layers.image)
    assert out.logits.shape == (3,) and out.category_logits.shape == (3, 200)
    assert E_pi(layers.mask).shape == (3, 20)
    eps = torch.rand(3, 4) * 2 - 1
    zt = phi(z, eps)
    assert zt.shape == z.shape
    assert torch.equal(zt[:, 10:], z[:, 10:]), "Phi must only move the first d_T = 10 dims"
    assert not torch.equal(zt[:, :10], z[:, :10])
    torch.testing.assert_close(phi(z, torch.zeros(3, 4)), z)  # T_0^Z is the identity
    longer = LatentTransform(dataclasses.replace(phi.cfg, gain=10.0))
    longer.load_state_dict(phi.state_dict())  # the gain is a constant, not a weight: same state dict
    torch.testing.assert_close(longer.shift(eps), 10 * phi.shift(eps))
    fixed = LatentTransform(dataclasses.replace(phi.cfg, gain=2.0, walk="fixed_length"))
    torch.testing.assert_close(fixed.shift(eps).norm(dim=1), 2.0 * eps.norm(dim=1))  # Phi picks only directions
    assert fixed.shift(torch.zeros(1, 4)).abs().max() == 0  # T_0^Z stays the identity


def test_codes_reach_the_right_layers():
    """Background depends on z only; the mask on z and c_sup only; the foreground on c as well."""
    torch.manual_seed(0)
    G = LayeredGenerator(gan_config(32, "E", width=4).generator).eval()
    z = torch.randn(1, 100).repeat(2, 1)
    same_group = G(z, torch.tensor([30, 37]))  # both in super-category 3
    assert torch.equal(same_group.background[0], same_group.background[1])
    torch.testing.assert_close(same_group.mask[0], same_group.mask[1])
    assert not torch.allclose(same_group.foreground[0], same_group.foreground[1])
    other_group = G(z, torch.tensor([30, 150]))
    assert not torch.allclose(other_group.mask[0], other_group.mask[1])
    assert torch.equal(other_group.background[0], other_group.background[1])


@pytest.mark.parametrize(("n_categories", "group_size"), [(200, 10), (12, 1), (12, 12), (12, 4)])
def test_category_arithmetic_round_trips_and_clamps(n_categories, group_size):
    """c <-> (c_sup, index in its group): one place (LayeredGenerator), ints and tensors alike, and the
    c_sup slider's move (with_super_category) keeps the index and holds c_sup to the model's range."""
    cfg = dataclasses.replace(gan_config(32, "E", width=4).generator, n_categories=n_categories,
                              group_size=group_size)
    G, n_super = LayeredGenerator(cfg), cfg.n_super
    for c in range(n_categories):
        sup, index = G.super_category(c), G.index_in_group(c)
        assert type(sup) is int and type(index) is int
        assert 0 <= sup < n_super and 0 <= index < group_size
        assert G.category(sup, index) == c
        assert G.with_super_category(c, sup) == c
        for other in range(n_super):
            moved = G.with_super_category(c, other)
            assert G.super_category(moved) == other and G.index_in_group(moved) == index
        assert G.with_super_category(c, n_super + 5) == G.category(n_super - 1, index)  # held to the range
        assert G.with_super_category(c, -3) == index
        assert G.clamp_category(c) == c
    assert G.clamp_category(n_categories + 7) == n_categories - 1 and G.clamp_category(-1) == 0
    cs = torch.arange(n_categories)  # the same arithmetic on tensors (what forward and the loss use)
    sups, indices = G.super_category(cs), G.index_in_group(cs)
    assert sups.dtype == indices.dtype == cs.dtype
    assert sups.tolist() == [G.super_category(c) for c in range(n_categories)]
    assert indices.tolist() == [G.index_in_group(c) for c in range(n_categories)]
    assert torch.equal(G.category(sups, indices), cs)


def test_spectral_norm_everywhere_in_discriminator():
    cfg = gan_config(32, "E", width=4)
    for net in (Discriminator(cfg.discriminator), SuperCategoryRecovery(cfg.discriminator)):
        layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers and all(hasattr(m, "parametrizations") for m in layers)


def test_orthogonal_init():
    G = LayeredGenerator(gan_config(32, "E", width=4).generator)
    w = G.background.stage.fc[0].weight  # [4096*..., 100]: orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(w.shape[1]), atol=1e-4, rtol=0)


def test_folding_batchnorm_keeps_the_rotnet_features_and_their_gradients():
    from elgan.nets.rotnet import RotNet, fold_batchnorm, freeze

    torch.manual_seed(0)
    net = RotNet()
    with torch.no_grad():  # non-trivial running statistics and affine terms, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    with pytest.raises(ValueError, match="frozen"):
        fold_batchnorm(net)
    freeze(net)
    x = torch.rand(4, 3, 32, 32, requires_grad=True) * 2 - 1
    ref = net.pyramid(x)
    grad_ref = torch.autograd.grad(sum(f.square().mean() for f in ref), x)[0]
    fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    out = net.pyramid(x)
    for a, b in zip(out, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    grad = torch.autograd.grad(sum(f.square().mean() for f in out), x)[0]
    assert torch.allclose(grad, grad_ref, atol=1e-6)
