"""Self-supervised RotNet on the GAN's own training images: the offline perceptual network.

The paper's perceptual network is a RotNet-pretrained VGG16 (no labels); with nothing to download we
train the same pretext task -- which of 0/90/180/270 degrees was an image rotated by -- on the
training images themselves, so the features stay label-free and need no external data.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..checkpoint import load_bundle, load_into, save_bundle
from ..config import from_dict
from ..nets.rotnet import RotNet, RotNetConfig, VGGFeatures, freeze, rotation_batch


def train_rotnet(images: torch.Tensor, iters: int, rng: torch.Generator, device: torch.device,
                 cfg: RotNetConfig | None = None, batch: int = 64, lr: float = 1e-3,
                 on_step: Callable[[int, float, float], None] | None = None) -> RotNet:
    """images: uint8 [N, 3, H, W]. Returns the trained net (frozen, eval mode)."""
    net = RotNet(cfg or RotNetConfig()).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(iters):
        idx = torch.randint(0, images.shape[0], (batch,), generator=rng)
        x = images[idx].to(device).float() / 127.5 - 1
        if torch.rand((), generator=rng) < 0.5:
            x = x.flip(3)
        x, labels = rotation_batch(x, rng)
        logits = net(x)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.item(), (logits.argmax(1) == labels).float().mean().item())
    return freeze(net)


def save_rotnet(net: RotNet, path: str | os.PathLike, metadata: dict | None = None) -> None:
    save_bundle(path, {"rotnet": net}, {"rotnet": net.cfg}, metadata)


def load_feature_net(path: str | os.PathLike, device: torch.device | str = "cpu") -> RotNet | VGGFeatures:
    """A RotNet bundle written by this project, or a user-supplied torchvision VGG16 state dict."""
    path = str(path)
    try:
        bundle = load_bundle(path, require=["rotnet"])
    except Exception:  # not one of ours: try the VGG16 formats
        return freeze(VGGFeatures(path)).to(device)
    net = RotNet(from_dict(RotNetConfig, bundle.config("rotnet")))
    load_into(net, bundle.state_dict("rotnet"), "rotnet")
    return freeze(net).to(device)
