"""The segmentation network F_theta of section 3.4: a plain U-Net (Ronneberger et al.).

The paper uses "a simple U-Net" trained as Voynov et al. do; nothing about the architecture matters
to the method beyond being a decent dense predictor, so this is the textbook one: at each of `depth`
levels two 3x3 conv-BN-ReLU, 2x2 max-pool down, bilinear x2 up (no checkerboard artefacts and half the
parameters of transposed convs), skip concatenation, and a 1x1 head giving one foreground *logit* per
pixel (the sigmoid lives in the loss, BCE-with-logits, for numerical stability).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UNetConfig


class DoubleConv(nn.Sequential):
    """(3x3 conv, BN, ReLU) x 2; no conv bias since BN follows."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Down(nn.Sequential):
    """Halve the resolution, then a double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class Up(nn.Module):
    """Bilinear x2, a 1x1 conv that halves the channels, concatenation with the skip, a double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 1)
        self.conv = DoubleConv(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, self.reduce(x)], 1))


class UNet(nn.Module):
    """F_theta: image [N, 3, H, W] in [-1, 1] -> foreground logits [N, 1, H, W].

    H and W must be multiples of 2**depth (32, 64 and 128 all are for the default depth 4).
    `input_size` is the resolution it was trained at (not a weight: trainers and loaders set it); the
    evaluation protocol resizes images to it and upsamples the prediction back.
    """

    def __init__(self, cfg: UNetConfig, input_size: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = input_size
        ch = [cfg.base * 2**i for i in range(cfg.depth + 1)]  # channels per level, finest first
        self.inc = DoubleConv(cfg.in_channels, ch[0])
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1]) for i in range(cfg.depth))
        self.ups = nn.ModuleList(Up(ch[i + 1], ch[i]) for i in reversed(range(cfg.depth)))
        self.head = nn.Conv2d(ch[0], 1, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this."""
        return 2**self.cfg.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        assert c == self.cfg.in_channels, f"expected {self.cfg.in_channels} channels, got {tuple(x.shape)}"
        assert h % self.multiple == 0 and w % self.multiple == 0, \
            f"H and W must be multiples of {self.multiple}, got {h}x{w}"
        skips = [self.inc(x)]  # [N, base, H, W]
        for down in self.downs:
            skips.append(down(skips[-1]))  # [N, base * 2^i, H / 2^i, W / 2^i]
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)  # [N, 1, H, W] logits

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities [N, 1, H, W] in [0, 1] (callers set eval mode)."""
        return torch.sigmoid(self(x))
