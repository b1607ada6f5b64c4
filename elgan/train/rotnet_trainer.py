"""Self-supervised RotNet on the GAN's own training images: the offline perceptual network.

The paper's perceptual network is a RotNet-pretrained VGG16 (no labels); with nothing to download we
train the same pretext task -- which of 0/90/180/270 degrees was an image rotated by -- on the
training images themselves, so the features stay label-free and need no external data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoint import load_bundle, load_into, save_bundle
from ..config import from_dict
from ..nets.rotnet import RotNet, RotNetConfig, VGGFeatures, freeze, rotation_batch
from .runlog import progress_bar

BATCH, LR = 64, 1e-3  # the recipe's fixed settings (part of a cached RotNet's key, elgan/train/feature_stage.py)


def train_rotnet(images: torch.Tensor, iters: int, rng: torch.Generator, device: torch.device,
                 cfg: RotNetConfig | None = None, batch: int = BATCH, lr: float = LR,
                 on_step: Callable[[int, float, float], None] | None = None,
                 init_seed: int | None = None) -> RotNet:
    """images: uint8 [N, 3, H, W]. Returns the trained net (frozen, eval mode).

    The initial weights come from torch's global RNG as it stands (a GAN run trains its RotNet after
    building its networks, so they depend on the run's config), or, with `init_seed`, from that seed
    alone -- without touching the global RNG -- so that runs of other configs train the same net."""
    if init_seed is None:
        net = RotNet(cfg or RotNetConfig())
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(init_seed)
            net = RotNet(cfg or RotNetConfig())
    net = net.to(device)
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


def fit_rotnet(images: torch.Tensor, iters: int, seed: int, device: torch.device, progress: bool,
               init_seed: int | None = None) -> tuple[RotNet, dict[str, Any]]:
    """train_rotnet with the run's seeds and a progress bar; also gives what to record with the file
    (steps, final loss and rotation accuracy). Batches are drawn from seed + 2, as GAN runs always did."""
    rng = torch.Generator().manual_seed(seed + 2)
    bar = progress_bar(iters, "RotNet (perceptual net)", progress)
    state: dict[str, float] = {}

    def on_step(step: int, loss: float, acc: float) -> None:
        state.update(loss=loss, acc=acc)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}")

    net = train_rotnet(images, iters, rng, device, on_step=on_step, init_seed=init_seed)
    bar.close()
    return net, {"iters": iters, "final_loss": state.get("loss"), "final_acc": state.get("acc")}


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
