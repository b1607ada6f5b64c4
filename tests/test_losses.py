"""Each loss term on hand cases."""

import math

import torch

from elgan import losses
from elgan.config import gan_config
from elgan.fid import fd_between, frechet_distance
from elgan.nets.discriminator import Discriminator


def test_hinge():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert losses.hinge_d(real, fake).item() == (0 + 0.5) / 2 + (0 + 1) / 2
    assert losses.hinge_g(torch.tensor([1.0, 3.0])).item() == -2.0


def test_recovery_from_an_all_zero_mask_is_impossible():
    """An all-background composite carries no information on c: a fresh head cannot beat chance (log 200)."""
    torch.manual_seed(0)
    D = Discriminator(gan_config(32, "E", width=4).discriminator)
    background = torch.rand(64, 3, 32, 32) * 2 - 1
    c = torch.randint(0, 200, (64,))
    loss = losses.recovery_loss(D(background).category_logits, c)
    assert math.log(200) - 0.1 < loss.item() < math.log(200) + 1.0
    perfect = torch.nn.functional.one_hot(c, 200).float() * 50
    assert losses.recovery_loss(perfect, c).item() < 1e-6


def test_background_fake_is_a_hinge_on_the_background_logits():
    assert losses.background_fake(torch.tensor([-2.0, -1.0])).item() == 0.0  # already called fake
    assert losses.background_fake(torch.tensor([1.0, 0.0])).item() == 1.5  # (2 + 1) / 2


def test_binarization():
    binary = (torch.rand(2, 1, 8, 8) > 0.5).float()
    assert losses.binarization_loss(binary).item() == 0
    assert losses.binarization_loss(torch.full((1, 1, 4, 4), 0.5)).item() == 0.5
    assert math.isclose(losses.binarization_loss(torch.full((1, 1, 4, 4), 0.8)).item(), 0.2, rel_tol=1e-6)


def test_mask_size():
    m = torch.zeros(2, 1, 10, 10)
    m[0, :, :5] = 1  # area 0.5 -> no penalty; second mask empty -> eta
    assert math.isclose(losses.mask_size_loss(m, 0.25).item(), 0.25 / 2, rel_tol=1e-6)


def test_moment_regularizer():
    torch.manual_seed(0)
    z = torch.randn(20000, 10)
    assert losses.moment_regularizer(z).item() < 0.01
    assert math.isclose(losses.moment_regularizer(torch.zeros(4, 3)).item(), 3.0)  # ||0 - 1||^2 over 3 dims
    assert math.isclose(losses.moment_regularizer(torch.full((4, 2), 2.0)).item(), 2 * 4 + 2 * 9)


def test_moment_regularizer_known_drops_the_sampling_noise_of_z():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 100, generator=g)
    # no walk: the known form is exactly 0, the batch form is z's sampling noise (about 100 * 3 / 32)
    assert losses.moment_regularizer_known(z, z).item() == 0.0
    assert 5 < losses.moment_regularizer(z).item() < 15
    # with a walk, both estimate the same population value ||E s||^2 + ||E s^2||^2 (large batch)
    big = torch.randn(200_000, 4, generator=g)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0])
    population = shift.pow(2).sum() + shift.pow(4).sum()
    assert math.isclose(losses.moment_regularizer_known(big, big + shift).item(), population.item(), rel_tol=0.02)
    assert math.isclose(losses.moment_regularizer(big + shift).item(), population.item(), rel_tol=0.02)


def test_perceptual_distance_and_equivariance_loss():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.ones(2, 3, 4, 4)
    assert losses.perceptual_distance([x], [y]).item() == 3.0  # input level: sum over channels, mean over u
    f1, f2 = torch.tensor([[[[3.0]], [[4.0]]]]), torch.tensor([[[[6.0]], [[8.0]]]])
    assert losses.perceptual_distance([x[:1], f1], [x[:1], f2]).item() < 1e-10  # normalised: scale-free

    def pyramid(img):
        return [img, img.mean(1, keepdim=True) + 2]

    a = torch.rand(3, 3, 8, 8)
    assert losses.equivariance_loss(pyramid, a, a).item() == 0
    assert losses.equivariance_loss(pyramid, a, a + 0.5).item() > 0


def test_relative_equivariance_loss_gives_a_lazy_walk_no_reward_for_a_small_object():
    """Absolute eq. (8): a walk that does nothing costs less when the object is smaller (the mask-shrinking
    escape). Relative form: it costs 1 whatever the object's size; a walk that makes the move costs 0."""
    def pyramid(img):
        return [img]

    def scene(size: int, shift: int) -> torch.Tensor:
        img = torch.zeros(4, 3, 16, 16)
        img[:, :, 4 + shift:4 + shift + size, 4:4 + size] = 1.0
        return img

    lazy = {s: losses.equivariance_loss(pyramid, scene(s, 0), scene(s, 2)).item() for s in (2, 8)}
    assert lazy[2] < lazy[8]
    rel = {s: losses.equivariance_loss(pyramid, scene(s, 0), scene(s, 2), unmoved=scene(s, 0)).item()
           for s in (2, 8)}
    assert abs(rel[2] - 1) < 0.02 and abs(rel[8] - 1) < 0.02  # the floor (1e-3) takes a little
    assert losses.equivariance_loss(pyramid, scene(8, 2), scene(8, 2), unmoved=scene(8, 0)).item() == 0


def test_pixel_equivariance_loss_is_the_measured_ratio():
    """1 for a walk that does nothing, 0 for the exact move, in between for a part of it; and a texture
    left where it was while its outline moves is not free (what the normalised features may let pass)."""
    unmoved = torch.zeros(2, 3, 16, 16)
    unmoved[:, :, 4:10, 4:10] = 1.0
    moved = torch.zeros(2, 3, 16, 16)
    moved[:, :, 4:10, 6:12] = 1.0
    assert abs(losses.pixel_equivariance_loss(unmoved, moved, unmoved).item() - 1) < 0.02  # the floor takes a little
    assert losses.pixel_equivariance_loss(moved, moved, unmoved).item() == 0
    half = torch.zeros(2, 3, 16, 16)
    half[:, :, 4:10, 5:11] = 1.0
    assert 0.3 < losses.pixel_equivariance_loss(half, moved, unmoved).item() < 0.7
    striped = moved.clone()
    striped[:, 0, 4:10, 6:12:2] = 0.0  # the outline moved, the stripes did not
    assert losses.pixel_equivariance_loss(striped, moved, unmoved).item() > 0.1


def test_mask_ceiling_is_a_prior_on_the_batch_mean():
    """Free below the ceiling on average, whatever single masks do; the excess of the mean above it."""
    assert losses.mask_ceiling_loss(torch.tensor([0.95, 0.05, 0.2, 0.2]), 0.5).item() == 0
    assert abs(losses.mask_ceiling_loss(torch.tensor([0.9, 0.9, 0.8, 0.8]), 0.5).item() - 0.35) < 1e-6
    areas = torch.tensor([0.9, 0.7], requires_grad=True)
    losses.mask_ceiling_loss(areas, 0.5).backward()
    assert torch.all(areas.grad > 0)  # the gradient shrinks every mask of a batch that is over


def test_layer_independence_punishes_a_background_that_hides_its_own_foreground():
    g = torch.Generator().manual_seed(0)
    n = 16
    fg = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    # one mask shape for all: the estimator pairs masks too, and different shapes alone make the terms differ
    mask = (torch.rand(1, 1, 8, 8, generator=g) > 0.5).float().expand(n, 1, 8, 8)
    pairing = torch.roll(torch.arange(n), 1)
    leaky = losses.layer_independence_loss(fg.clone(), fg, mask, pairing)  # background = a copy of the object
    independent = losses.layer_independence_loss(torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, fg, mask, pairing)
    assert leaky > 0.2 and abs(independent) < 0.05  # |u - v| of two uniforms on [-1, 1]: 2/3 per visible pixel
    assert leaky > independent
    # gradients reach both layers and the mask, and lowering the term moves the background away from fg
    bg = fg.clone().requires_grad_(True)
    m = mask.clone().requires_grad_(True)
    losses.layer_independence_loss(bg, fg, m, pairing).backward()
    assert bg.grad.abs().sum() > 0 and m.grad is not None


def test_equivariance_rampup():
    assert losses.equivariance_weight(0, 0.5, 100) == 0
    assert losses.equivariance_weight(50, 0.5, 100) == 0.25
    assert losses.equivariance_weight(500, 0.5, 100) == 0.5


def test_frechet_distance():
    torch.manual_seed(0)
    a, b = torch.randn(4000, 3), torch.randn(4000, 3)
    assert fd_between(a, b) < 0.02
    assert abs(fd_between(a, b + 2.0) - 12.0) < 0.2  # mean shift 2 in 3 dims
    eye = torch.eye(2, dtype=torch.float64)
    # tr(C1 + C2 - 2 sqrt(C1 C2)) for C1 = I, C2 = 4 I: 2 + 8 - 2 * 2 * 2 = 2
    assert math.isclose(frechet_distance(torch.zeros(2), eye, torch.zeros(2), 4 * eye), 2.0, rel_tol=1e-9)


def test_mask_statistics_count_near_empty_samples_that_the_mean_hides():
    from elgan.gan_loss import mask_statistics

    m = torch.zeros(4, 1, 10, 10)
    m[0] = 1  # one full mask, two empty ones, one with 3 of 100 pixels: mean area 0.2575 looks healthy
    m[3, :, 0, :3] = 1
    stats = mask_statistics(m)
    assert math.isclose(stats["mask_area"], 1.03 / 4, rel_tol=1e-6)
    assert stats["mask_empty_frac"] == 0.75 and stats["mask_binary_frac"] == 1.0
