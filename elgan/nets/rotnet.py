"""Perceptual feature networks for the equivariance loss and the offline Frechet distance.

The paper uses a VGG16 pre-trained by RotNet (predicting 0/90/180/270 degree rotations) on ImageNet:
self-supervised, so no label leaks into the method. Nothing can be downloaded here, so by default a
small RotNet is trained on the GAN's own training images (RotNet, below); a user who has the VGG16
weights can pass them instead (VGGFeatures). Both expose `pyramid(x) -> [x, Gamma^1, Gamma^2, ...]`
for images in [-1, 1] and `embed(x) -> [N, D]` for Frechet distances.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RotNetConfig:
    width: int = 16  # channels of the first block; doubles per block (small: it runs in every G step)
    blocks: int = 3  # conv blocks, each followed by 2x average pooling; one feature level each


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RotNet(nn.Module):
    """Conv blocks + a 4-way rotation classifier; the blocks' outputs are the perceptual features."""

    def __init__(self, cfg: RotNetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or RotNetConfig()
        self.cfg = cfg
        chans = [3] + [cfg.width * 2**i for i in range(cfg.blocks)]
        self.blocks = nn.ModuleList(_block(chans[i], chans[i + 1]) for i in range(cfg.blocks))
        self.classifier = nn.Linear(chans[-1], 4)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]  # Gamma^(0) is the input image itself
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h if i == 0 else F.avg_pool2d(h, 2))
            feats.append(h)
        return feats

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features of the last two levels, [N, D]: the space of FD-RotNet."""
        feats = self.pyramid(x)[-2:]
        return torch.cat([f.mean((2, 3)) for f in feats], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pyramid(x)[-1].mean((2, 3)))  # [N, 4] rotation logits


def rotation_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image rotated by a random multiple of 90 degrees, with the multiple as the label."""
    labels = torch.randint(0, 4, (x.shape[0],), generator=generator, device=generator.device if generator else "cpu")
    labels = labels.to(x.device)
    out = torch.stack([torch.rot90(img, int(k), dims=(1, 2)) for img, k in zip(x, labels.tolist(), strict=True)])
    return out, labels


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients: a fixed measuring instrument (gradients still reach inputs)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def fold_batchnorm(net: RotNet) -> RotNet:
    """A frozen RotNet with each BatchNorm folded into the convolution before it, in place.

    The same features to float rounding, without two passes over every activation map forward and two
    backward: the equivariance loss backpropagates through this net in every G step, and at 64² its
    first block's BatchNorms cost more than its convolutions (benchmarks/bench_train_step.py --profile).
    Only for measuring (eval mode): the folded net cannot be trained or saved as a RotNet."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if net.training:
        raise ValueError("fold_batchnorm needs a frozen (eval-mode) RotNet")
    for block in net.blocks:
        for i, layer in enumerate(block):
            if isinstance(layer, nn.BatchNorm2d):
                block[i - 1] = fuse_conv_bn_eval(block[i - 1], layer)
                block[i] = nn.Identity()
    return freeze(net)


class VGGFeatures(nn.Module):
    """torchvision's VGG16 `features` (relu1_2, relu2_2, relu3_3, relu4_3) from a user-supplied file.

    Expected file: a state dict of torchvision.models.vgg16 (keys `features.N.weight/bias`, extra keys
    ignored), as .safetensors or as a torch file read with weights_only=True (no pickle objects)."""

    TAPS = (3, 8, 15, 22)

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features[: self.TAPS[-1] + 1]
        path = str(path)
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.replace("module.", ""): v for k, v in state.items()}
        own = {k: v for k, v in state.items() if k.startswith("features.")}
        sub = {k[len("features."):]: v for k, v in own.items() if int(k.split(".")[1]) <= self.TAPS[-1]}
        missing = set(self.features.state_dict()) - set(sub)
        if missing:
            raise ValueError(f"{path}: not a torchvision VGG16 state dict (missing {sorted(missing)[:4]})")
        self.features.load_state_dict(sub)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        h = ((x + 1) / 2 - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                feats.append(h)
        return feats

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.mean((2, 3)) for f in self.pyramid(x)[-2:]], 1)
