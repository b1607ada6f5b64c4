"""The segmentation network F_theta of section 3.4: a plain U-Net (Ronneberger et al.).

The paper uses "a simple U-Net" trained as Voynov et al. do; nothing about the architecture matters
to the method beyond being a decent dense predictor, so this is the textbook one: at each of `depth`
levels two 3x3 conv-BN-ReLU, 2x2 max-pool down, bilinear x2 up (no checkerboard artefacts and half the
parameters of transposed convs), skip concatenation, and a 1x1 head giving one foreground *logit* per
pixel (the sigmoid lives in the loss, BCE-with-logits, for numerical stability).

``encoder="lite0"`` (not the paper's) swaps the trained encoder for the frozen ImageNet EfficientNet-Lite0
of elgan.nets.features: the decoder learns from synthetic pairs what to do with features that were
learnt on real photos, so a gap between G's pictures and photos costs less. See PretrainedUNet.
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
    """Bilinear x2, a 1x1 conv to `cout` channels, concatenation with the skip (`skip` channels, default
    `cout`), a double conv."""

    def __init__(self, cin: int, cout: int, skip: int | None = None) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 1)
        self.conv = DoubleConv(cout + (cout if skip is None else skip), cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, self.reduce(x)], 1))


class Segmenter(nn.Module):
    """What every F_theta shares: image [N, 3, H, W] in [-1, 1] -> foreground logits [N, 1, H, W].

    H and W must be multiples of ``multiple`` (the encoder's total stride, UNetConfig.multiple).
    `input_size` is the resolution it was trained at (not a weight: trainers and loaders set it); the
    evaluation protocol resizes images to it and upsamples the prediction back.
    """

    def __init__(self, cfg: UNetConfig, input_size: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = input_size

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this."""
        return self.cfg.multiple

    def check_input(self, x: torch.Tensor) -> None:
        n, c, h, w = x.shape
        assert c == self.cfg.in_channels, f"expected {self.cfg.in_channels} channels, got {tuple(x.shape)}"
        assert h % self.multiple == 0 and w % self.multiple == 0, \
            f"H and W must be multiples of {self.multiple}, got {h}x{w}"

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities [N, 1, H, W] in [0, 1] (callers set eval mode)."""
        return torch.sigmoid(self(x))


class UNet(Segmenter):
    """The paper's F_theta: the textbook U-Net (32, 64 and 128 px all fit the default depth 4)."""

    def __init__(self, cfg: UNetConfig, input_size: int | None = None) -> None:
        super().__init__(cfg, input_size)
        ch = [cfg.base * 2**i for i in range(cfg.depth + 1)]  # channels per level, finest first
        self.inc = DoubleConv(cfg.in_channels, ch[0])
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1]) for i in range(cfg.depth))
        self.ups = nn.ModuleList(Up(ch[i + 1], ch[i]) for i in reversed(range(cfg.depth)))
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = [self.inc(x)]  # [N, base, H, W]
        for down in self.downs:
            skips.append(down(skips[-1]))  # [N, base * 2^i, H / 2^i, W / 2^i]
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)  # [N, 1, H, W] logits


class PretrainedUNet(Segmenter):
    """F_theta with a frozen ImageNet EfficientNet-Lite0 encoder: image [N, 3, H, W] -> logits [N, 1, H, W].

    The image (in [-1, 1], the features' own range) is upsampled by ``encoder_scale`` and read by the
    pretrained net at five strides (stem 2, levels 4 / 8 / 16 / 32 of its input); a trained decoder climbs
    back through them and ends on a full-resolution skip of its own (two 3x3 convs on the image) for
    sharp edges. The pretrained weights are not a submodule: they are not trained, not saved (the
    installed package provides them) and not counted in the state dict; eval-mode BatchNorm always.
    """

    def __init__(self, cfg: UNetConfig, input_size: int | None = None) -> None:
        super().__init__(cfg, input_size)
        from .features import LEVEL_CHANNELS, STEM_CHANNELS

        b = cfg.base
        widths = (8 * b, 4 * b, 2 * b, 2 * b)  # decoder widths at strides 16, 8, 4, 2 of the encoder's input
        skips = (*reversed(LEVEL_CHANNELS[:-1]), STEM_CHANNELS)  # 112, 40, 24 (levels 2, 1, 0), then the stem
        ups, cin = [], LEVEL_CHANNELS[-1]
        for skip, cout in zip(skips, widths, strict=True):
            ups.append(Up(cin, cout, skip))
            cin = cout
        self.ups = nn.ModuleList(ups)
        self.image = DoubleConv(cfg.in_channels, b)  # the full-resolution skip
        self.last = Up(cin, b)
        self.head = nn.Conv2d(b, 1, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem, level0 .. level3] of the frozen net on x upsampled by encoder_scale (no gradient)."""
        from .features import pretrained_lite0

        net = pretrained_lite0(x.device)
        with torch.no_grad():
            if self.cfg.encoder_scale != 1:
                x = F.interpolate(x, scale_factor=self.cfg.encoder_scale, mode="bilinear", align_corners=False)
            maps = [net.stem(x)]  # [N, 32, sH/2, sW/2]
            for level in net.levels:
                maps.append(level(maps[-1]))  # [N, C_l, sH/2^(l+2), sW/2^(l+2)], C = 24, 40, 112, 320
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        stem, *levels = self.encode(x)
        y = levels[-1]  # [N, 320, sH/32, sW/32]
        for up, skip in zip(self.ups, (*reversed(levels[:-1]), stem), strict=True):
            y = up(y, skip)  # up to the stem's stride 2 of the upsampled input
        return self.head(self.last(y, self.image(x)))  # [N, 1, H, W] logits


def build_unet(cfg: UNetConfig, input_size: int | None = None) -> Segmenter:
    """F_theta for cfg.encoder: the paper's U-Net, or the decoder on the frozen pretrained encoder."""
    return UNet(cfg, input_size) if cfg.encoder == "scratch" else PretrainedUNet(cfg, input_size)
