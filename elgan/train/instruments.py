"""The frozen measuring nets of a GAN run, and the layer-health readings taken with them.

Two instruments, chosen by the run's config:
* the perceptual net of eq. (8) (``perceptual``): a RotNet trained self-supervised on the run's own
  images (rank 0 trains it first and saves ``rotnet.safetensors``; a RotNet / VGG16 file via ``rotnet``:
  a user's, or the one the pipeline's features stage trained once and shared), or the frozen ImageNet
  EfficientNet-Lite0 (``effnet``);
* the model-selection embedding (``fd_net``): FD-Lite0, pooled Lite0 features of images resized to
  224² -- the same space for every run, so the numbers compare across runs (not FID: another network);
  or FD-RotNet in the run's own RotNet, whose numbers rank the checkpoints of one run only.
A RotNet is trained only when one of them needs it.

Layer health: the readings that say whether the layers mean what they should, logged with the losses.
The last one is the symptom of a background that has learned to paint the object: when D scores the
background layer *alone* as real as the composite, the foreground adds nothing D misses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import GanTrainConfig
from ..nets.features import pretrained_lite0
from ..nets.rotnet import RotNet, fold_batchnorm, freeze
from . import distributed as ddp
from .rotnet_trainer import fit_rotnet, load_feature_net, save_rotnet

HEALTH_WARNING = "background layer alone scores as real as the composite: the object may be painted into it"


def needs_rotnet(cfg: GanTrainConfig) -> bool:
    return (cfg.loss.equivariance and cfg.perceptual == "rotnet") or (cfg.fd_net == "rotnet" and not cfg.inception)


def fd_name(cfg: GanTrainConfig) -> str:
    """The label of the selection metric; FD-Lite0 and FD-RotNet are Frechet distances, never FID."""
    if cfg.inception:
        return "FID"
    if cfg.fd_net == "lite0":
        return "FD-Lite0"
    return "FD-VGG16" if cfg.rotnet and not cfg.rotnet.endswith(".safetensors") else "FD-RotNet"


def build_instruments(cfg: GanTrainConfig, real: torch.Tensor, run_dir: Path, device: torch.device,
                      progress: bool) -> tuple[nn.Module | None, Callable[[torch.Tensor], torch.Tensor]]:
    """(perceptual net or None when eq. (8) is off, FD embedding). `real`: uint8 [N, 3, H, W]."""
    rotnet = _rotnet_everywhere(cfg, real, run_dir, device, progress) if needs_rotnet(cfg) else None
    if isinstance(rotnet, RotNet):
        fold_batchnorm(rotnet)  # frozen: BN folded into its convs (same features, less work)
    perceptual: nn.Module | None = None
    if cfg.loss.equivariance:
        perceptual = pretrained_lite0(device) if cfg.perceptual == "effnet" else rotnet
    embed = pretrained_lite0(device).embed if cfg.fd_net == "lite0" or rotnet is None else rotnet.embed
    return perceptual, embed


def _rotnet_everywhere(cfg: GanTrainConfig, real: torch.Tensor, run_dir: Path, device: torch.device,
                       progress: bool) -> Any:
    """Rank 0 reads the given file (``rotnet``: a user's, or the pipeline's shared cache entry) or trains a
    RotNet (or reloads it from the run folder), and hands it to the other ranks by broadcast: the file
    need be on rank 0's disk only. A user's VGG16 weights are read by every rank, as before."""
    built: dict[str, Any] = {}

    def on_main() -> Any:
        own = run_dir / "rotnet.safetensors"
        net = load_feature_net(cfg.rotnet, device) if cfg.rotnet else _rotnet(cfg, real, own, device, progress)
        built["net"] = net
        return net.cfg if isinstance(net, RotNet) else None

    net_cfg = ddp.on_main(on_main)
    if net_cfg is None:  # VGG16 features from the user's file
        return built["net"] if "net" in built else load_feature_net(cfg.rotnet, device)
    return ddp.broadcast_module(built["net"] if "net" in built else freeze(RotNet(net_cfg)).to(device))


def _rotnet(cfg: GanTrainConfig, real: torch.Tensor, path: Path, device: torch.device, progress: bool) -> Any:
    if path.exists():
        return load_feature_net(path, device)
    net, record = fit_rotnet(real, cfg.rotnet_iters, cfg.seed, device, progress)  # initial weights: the run's RNG
    save_rotnet(net, path, record)
    return net


@torch.no_grad()
def background_minus_composite(discriminator: nn.Module, background: torch.Tensor, image: torch.Tensor) -> float:
    """Mean D score of the background layers alone minus that of the composites (no augmentation).

    Negative: D finds the composite more real, i.e. the foreground adds what a real image has. Zero or
    positive: the background alone passes as well as the whole image."""
    return float(discriminator(background).logits.float().mean() - discriminator(image).logits.float().mean())


def health_warning(record: dict[str, Any]) -> str | None:
    value = record.get("health_bg_minus_composite")
    return HEALTH_WARNING if isinstance(value, float) and value >= 0 else None
