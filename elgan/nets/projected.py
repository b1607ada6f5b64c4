"""Projected discriminator (Sauer et al., "Projected GANs Converge Faster", NeurIPS 2021), with E_x.

D reads the image through the frozen ImageNet EfficientNet-Lite0 (elgan.nets.features) instead of
learning its features from a few thousand iterations of a few hundred photos. As in Projected GAN:
* four feature levels of the pretrained net (strides 4, 8, 16, 32; 24 / 40 / 112 / 320 channels);
* cross-channel mixing (CCM): a fixed random 1x1 convolution per level to `proj_channels` channels;
* cross-scale mixing (CSM): from the deepest level up, add the coarser mixed map, upsample x2
  (bilinear), fixed random 1x1 convolution -- so each of the four maps (strides 2, 4, 8, 16) also
  carries the coarser levels' information;
* one small discriminator per scale: strided 4x4 convolutions down to 8x8 (or less), then a 4x4
  convolution to a map of logits; the logits of all scales are concatenated and the hinge loss is
  averaged over them.
The mixing weights are random, fixed at construction (PyTorch's default init, seeded by the run), and
saved with D; the pretrained weights are not (they come from the installed package).

Where this differs from the reference code, and why: the per-scale heads use spectral norm without
BatchNorm (this project's D sees real and fake in one batch, and in one DDP forward, where batch
statistics would mix the two); E_x -- the c-recovery head of eq. (6), which the paper puts on D's trunk --
reads the stride-8 mixed map, so it sees the same projected features as D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DiscriminatorConfig
from .discriminator import DiscriminatorOutput, orthogonal_init, sn_conv, sn_linear
from .features import LEVEL_CHANNELS, pretrained_lite0

FEATURE_STRIDES = (2, 4, 8, 16)  # strides of the four mixed maps (CSM upsamples each level by 2)


def _frozen_conv1x1(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1)
    for p in conv.parameters():
        p.requires_grad_(False)
    return conv


class RandomProjection(nn.Module):
    """CCM + CSM: four pretrained feature maps -> four mixed maps [N, P, S/2, S/2] ... [N, P, S/16, S/16]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ccm = nn.ModuleList(_frozen_conv1x1(c, channels) for c in LEVEL_CHANNELS)
        self.csm = nn.ModuleList(_frozen_conv1x1(channels, channels) for _ in LEVEL_CHANNELS)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [ccm(f) for ccm, f in zip(self.ccm, levels, strict=True)]
        out: list[torch.Tensor] = [torch.empty(0)] * len(mixed)
        h = None
        for i in reversed(range(len(mixed))):  # deepest first
            h = mixed[i] if h is None else h + mixed[i]
            h = self.csm[i](F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True))
            out[i] = h
        return out


def _head_channels(width: int, size: int, res: int) -> int:
    """Channels of a head's map at resolution `res`: the paper D's schedule (w at size/2, doubling)."""
    return min(16 * width, max(width, width * size // (2 * res)))


class ScaleDiscriminator(nn.Module):
    """One scale's D: strided SN 4x4 convs down to <= 8x8, then a 4x4 SN conv to logits [N, K]."""

    def __init__(self, cin: int, res: int, width: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = cin
        while res > 8:
            out = _head_channels(width, size, res // 2)
            layers += [sn_conv(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch, res = out, res // 2
        k = min(4, res)
        layers.append(sn_conv(ch, 1, k, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ProjectedDiscriminator(nn.Module):
    """D(x) on frozen pretrained features; same outputs as the paper's D (logits [N, K], E_x logits)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        in_size = cfg.proj_input_size or cfg.size
        self.projection = RandomProjection(cfg.proj_channels)
        resolutions = [in_size // s for s in FEATURE_STRIDES]
        self.heads = nn.ModuleList(ScaleDiscriminator(cfg.proj_channels, r, cfg.width, in_size)
                                   for r in resolutions)
        ch = cfg.proj_channels
        self.category_head = nn.Sequential(sn_conv(ch, 2 * ch, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), sn_linear(2 * ch, cfg.n_categories))
        for head in (*self.heads, self.category_head):
            orthogonal_init(head)

    def project(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [N, 3, S, S] in [-1, 1] -> the four mixed maps; gradients reach x, never the frozen weights."""
        if self.cfg.proj_input_size and x.shape[-1] != self.cfg.proj_input_size:
            x = F.interpolate(x, size=(self.cfg.proj_input_size,) * 2, mode="bilinear", align_corners=False)
        backbone = pretrained_lite0(x.device)
        return self.projection(backbone.features(x).levels)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        maps = self.project(x)
        logits = torch.cat([head(m) for head, m in zip(self.heads, maps, strict=True)], 1)  # [N, K]
        return DiscriminatorOutput(logits, self.cfg.recovery_gain * self.category_head(maps[2]))


def n_logits(cfg: DiscriminatorConfig) -> int:
    """How many logits per image the projected D gives (a sanity number for tests and docs)."""
    in_size = cfg.proj_input_size or cfg.size
    total = 0
    for s in FEATURE_STRIDES:
        r = in_size // s
        while r > 8:
            r //= 2
        total += (r - min(4, r) + 1) ** 2
    return total

