"""The layered generator G = (G_b, G_f) of ELGAN (appendix A, after FineGAN).

Who sees which code is the point of the design (appendix A):
* background  x_b = G_b(z)                       -- z only, so c can never be hidden in the background;
* mask        pi  = G_f^pi(z, c_sup)             -- the object's shape follows the super-category;
* foreground  x_f = G_f^x(z, c_sup, c)           -- appearance follows the category c.
The image is eq. (1): x = (1 - pi) * x_b + pi * x_f. ReLU replaces FineGAN's GLU, as in the paper.
"""

from __future__ import annotations

import math
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..config import GeneratorConfig

Code = TypeVar("Code", int, torch.Tensor)  # a category code: one int, or a tensor of them


class Layers(NamedTuple):
    background: torch.Tensor  # [N, 3, H, W] in [-1, 1]
    foreground: torch.Tensor  # [N, 3, H, W] in [-1, 1]
    mask: torch.Tensor  # [N, 1, H, W] in [0, 1]; 1 = foreground
    image: torch.Tensor  # [N, 3, H, W] composite, eq. (1)


def compose(background: torch.Tensor, foreground: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. (1): alpha-blend the foreground over the background."""
    return background + mask * (foreground - background)


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal weights for every trainable conv and linear layer (appendix A, after Saxe et al.).

    A spectral-normed layer's ``weight`` is recomputed from ``parametrizations.weight.original`` at each
    access, so an in-place init of ``weight`` would be lost: the init goes to ``original`` there.
    Frozen layers (requires_grad False, e.g. a projected D's fixed random mixing) keep their init."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            target = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            if not target.requires_grad:
                continue
            with torch.no_grad():
                nn.init.orthogonal_(target)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _channels(width: int, n_up: int) -> list[int]:
    """Channels at 4x4 and after each upsampling: 16w, 8w, 4w, 2w, w, w, ... (FineGAN's ngf schedule)."""
    return [max(width, 16 * width // 2**i) for i in range(n_up + 1)]


class UpBlock(nn.Sequential):
    """Nearest x2 upsampling, 3x3 conv, BN, ReLU (FineGAN's block with ReLU instead of GLU)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                                  nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class InitialStage(nn.Module):
    """code -> FC -> 4x4 feature map -> upsampling blocks to full resolution (FineGAN's INIT_STAGE_G)."""

    def __init__(self, code_dim: int, width: int, size: int) -> None:
        super().__init__()
        n_up = int(math.log2(size // 4))
        ch = _channels(width, n_up)
        self.fc = nn.Sequential(nn.Linear(code_dim, ch[0] * 16, bias=False), nn.BatchNorm1d(ch[0] * 16),
                                nn.ReLU(inplace=True))
        self.up = nn.Sequential(*[UpBlock(ch[i], ch[i + 1]) for i in range(n_up)])
        self.out_channels = ch[-1]

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.fc(code).view(code.shape[0], -1, 4, 4)  # [N, 16w, 4, 4]
        return self.up(h)  # [N, C, H, W]


class BackgroundGenerator(nn.Module):
    """G_b: z -> background image."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.stage = InitialStage(cfg.z_dim, cfg.width, cfg.size)
        self.to_rgb = nn.Conv2d(self.stage.out_channels, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_rgb(self.stage(z)))  # [N, 3, H, W]


class ForegroundGenerator(nn.Module):
    """G_f: the shape stage (z, c_sup) gives the mask; the appearance stage adds c for the foreground."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.shape_stage = InitialStage(cfg.z_dim + cfg.n_super, cfg.width, cfg.size)
        ch = self.shape_stage.out_channels
        self.to_mask = nn.Conv2d(ch, 1, 3, 1, 1)
        # FineGAN tiles the one-hot child code over space and convolves it with the features; a 1x1
        # conv of a tiled one-hot is a per-category vector, i.e. an embedding -- same function, far
        # fewer FLOPs than carrying 200 constant channels at full resolution.
        self.category_embedding = nn.Linear(cfg.n_categories, ch, bias=False)
        self.joint = nn.Sequential(nn.Conv2d(2 * ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch),
                                   nn.ReLU(inplace=True))
        self.residual = nn.Sequential(*[ResBlock(ch) for _ in range(cfg.fg_res_blocks)])
        self.to_rgb = nn.Conv2d(ch, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, c: torch.Tensor, c_sup: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_codes(z, F.one_hot(c, self.cfg.n_categories).to(z.dtype),
                                  F.one_hot(c_sup, self.cfg.n_super).to(z.dtype))

    def forward_codes(self, z: torch.Tensor, c_code: torch.Tensor,
                      c_sup_code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same network on code *vectors* [N, n_categories], [N, n_super]: one-hots give forward()
        exactly; probability vectors give the soft relaxation that inversion optimises (elgan/invert.py)."""
        h = self.shape_stage(torch.cat([z, c_sup_code], 1))  # [N, C, H, W]
        mask = torch.sigmoid(self.to_mask(h))  # [N, 1, H, W]
        e = self.category_embedding(c_code)  # [N, C]: one-hot @ W^T is W's column for c
        h = self.joint(torch.cat([h, e[:, :, None, None].expand_as(h)], 1))
        foreground = torch.tanh(self.to_rgb(self.residual(h)))  # [N, 3, H, W]
        return foreground, mask


class LayeredGenerator(nn.Module):
    """G(z, c) -> Layers(background, foreground, mask, image)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.background = BackgroundGenerator(cfg)
        self.foreground = ForegroundGenerator(cfg)
        orthogonal_init(self)

    # ---- c <-> (c_sup, index in the group): FineGAN's parent/child codes, the one place this arithmetic lives
    # (forward, the loss and the app's sliders all agree because they all ask here) ----

    def super_category(self, c: Code) -> Code:
        """c_sup = c // group_size: the parent code that picks the mask's shape (appendix A). Int or tensor."""
        if isinstance(c, torch.Tensor):
            return torch.div(c, self.cfg.group_size, rounding_mode="floor")
        return c // self.cfg.group_size

    def index_in_group(self, c: Code) -> Code:
        """c's place among the group_size categories of its super-category (c % group_size): what a change
        of shape group keeps, so the object changes outline and keeps its relative appearance."""
        return c % self.cfg.group_size

    def category(self, c_sup: Code, index: Code) -> Code:
        """The c at `index` in super-category `c_sup`: the inverse of (super_category, index_in_group)."""
        return c_sup * self.cfg.group_size + index

    def clamp_category(self, c: int) -> int:
        """c held to 0..n_categories - 1: a code chosen for another model may be out of this one's range."""
        return max(0, min(int(c), self.cfg.n_categories - 1))

    def with_super_category(self, c: int, c_sup: int) -> int:
        """The category with c's index in its group but in super-category `c_sup` (held to 0..n_super - 1):
        what the app's c_sup slider sets c to, since G sees c_sup only through c."""
        return self.category(max(0, min(int(c_sup), self.cfg.n_super - 1)), self.index_in_group(int(c)))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> Layers:
        assert z.dim() == 2 and z.shape[1] == self.cfg.z_dim, f"z must be [N, {self.cfg.z_dim}], got {tuple(z.shape)}"
        assert c.shape == z.shape[:1], f"c must be [N] integer categories, got {tuple(c.shape)}"
        background = self.background(z)
        foreground, mask = self.foreground(z, c, self.super_category(c))
        return Layers(background, foreground, mask, compose(background, foreground, mask))

    def forward_soft(self, z: torch.Tensor, c_probs: torch.Tensor) -> Layers:
        """G(z, c) with c relaxed to a distribution [N, n_categories] (rows sum to 1), same weights.

        The super-category code is c's marginal over each group of group_size categories, so a one-hot
        c_probs reproduces forward(z, c) and a soft one moves the mask and appearance continuously --
        the gradient path that inversion needs, since an integer c has none.
        """
        cfg = self.cfg
        assert c_probs.shape == (z.shape[0], cfg.n_categories), \
            f"c_probs must be [N, {cfg.n_categories}], got {tuple(c_probs.shape)}"
        c_sup_probs = c_probs.view(-1, cfg.n_super, cfg.group_size).sum(2)  # [N, n_super]
        background = self.background(z)
        foreground, mask = self.foreground.forward_codes(z, c_probs.to(z.dtype), c_sup_probs.to(z.dtype))
        return Layers(background, foreground, mask, compose(background, foreground, mask))

    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) [n, z_dim] and c ~ Cat(n_categories) uniform [n]."""
        device = device or next(self.parameters()).device
        gen_device = generator.device if generator is not None else device
        z = torch.randn(n, self.cfg.z_dim, generator=generator, device=gen_device).to(device)
        c = torch.randint(0, self.cfg.n_categories, (n,), generator=generator, device=gen_device).to(device)
        return z, c
