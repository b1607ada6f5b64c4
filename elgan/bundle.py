"""The app-facing model bundle: every network of a trained ELGAN in one safetensors file.

A bundle is rebuilt from the file alone -- each network from the JSON config stored beside its weights
(as nanoGPT rebuilds from ``model_args``) -- so a file trained with other widths or resolutions loads
without any flag, and a file that does not fit fails with a message that says what is wrong rather
than a raw state-dict error (the most common complaint in GAN demos' issue trackers).

Networks in the file: ``generator`` (required), ``phi``, ``unet``, ``discriminator`` (optional), and
``domain``: tensors only, the statistics of the training images that tell an upload unlike them
(``elgan.domain``; optional: older bundles load without it and never warn). Configs: ``generator``,
``phi``, ``perturb``, ``unet``, ``discriminator``; metadata: free-form JSON (metrics, preset, data, wall
times) plus ``unet_size``, the resolution the U-Net was trained at.
GAN-trainer checkpoints (which add ``super_recovery`` and a ``train`` config) load as bundles too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from .checkpoint import Bundle, CheckpointError, load_bundle, load_into, save_bundle
from .config import (
    ConfigError,
    DiscriminatorConfig,
    GeneratorConfig,
    PerturbConfig,
    PhiConfig,
    UNetConfig,
    from_dict,
    replace,
)
from .domain import ENTRY as DOMAIN_ENTRY
from .domain import DomainError, DomainStats
from .nets.discriminator import Discriminator, build_discriminator
from .nets.generator import LayeredGenerator
from .nets.phi import LatentTransform
from .nets.unet import Segmenter, build_unet

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


@dataclass
class ModelBundle:
    generator: LayeredGenerator  # G(z, c) -> Layers; eval mode
    phi: LatentTransform | None  # latent walk T_eps^Z, None when the file has none
    perturb: PerturbConfig  # the layer perturbation T_eps^X the GAN was trained with (eps <-> params)
    unet: Segmenter | None  # segmentation network F_theta, None before section 3.4's step
    discriminator: Discriminator | None  # D (with E_x), kept for the app's realism score; optional
    metadata: dict[str, Any] = field(default_factory=dict)  # metrics, preset, data, wall times, ...
    path: str = ""  # file it was loaded from
    unet_size: int | None = None  # resolution the U-Net was trained at (inputs are resized to it)
    domain: DomainStats | None = None  # feature statistics of the training images (elgan.domain), if stored

    @property
    def size(self) -> int:
        """The generator's output resolution."""
        return self.generator.cfg.size


def _config(bundle: Bundle, key: str, cls: type[T]) -> T:
    try:
        return from_dict(cls, bundle.config(key))
    except ConfigError as exc:
        raise CheckpointError(f"{bundle.path}: the stored {key!r} config is invalid: {exc}") from exc


def _build(bundle: Bundle, name: str, cls: type[M], cfg: Any, device: str | torch.device) -> M:
    net = cls(cfg)
    try:
        load_into(net, bundle.state_dict(name), what=f"{bundle.path}: network {name!r}")
    except CheckpointError:
        raise
    except RuntimeError as exc:  # anything load_state_dict still rejects
        raise CheckpointError(f"{bundle.path}: network {name!r} does not load: {exc}") from exc
    return net.to(device).eval()


def domain_of(bundle: Bundle) -> DomainStats | None:
    """The stored training-image statistics, None when the file has none; a malformed entry is refused
    like any other malformed network (the file was edited by hand or is damaged)."""
    if not bundle.has(DOMAIN_ENTRY):
        return None
    try:
        return DomainStats.from_tensors(bundle.state_dict(DOMAIN_ENTRY))
    except DomainError as exc:
        raise CheckpointError(f"{bundle.path}: {exc}") from None


def unet_size_of(bundle: Bundle) -> int | None:
    """The U-Net's working resolution: metadata ``unet_size``, else the generator's size, else None."""
    size = bundle.metadata.get("unet_size")
    if size is None and "generator" in bundle.configs:
        size = bundle.configs["generator"].get("size")
    return int(size) if size is not None else None


def load_unet(path: str | os.PathLike, device: str | torch.device = "cpu") -> Segmenter:
    """Only the U-Net of any bundle (pipeline bundle or U-Net checkpoint), its input_size set."""
    return _unet(load_bundle(path, require=["unet"]), device)


def _unet(bundle: Bundle, device: str | torch.device) -> Segmenter:
    unet = _build(bundle, "unet", build_unet, _config(bundle, "unet", UNetConfig), device)
    unet.input_size = unet_size_of(bundle)
    # channels-last weights: the same outputs (to float rounding), about 2x the batched throughput on CPU
    # (benchmarks/bench_unet.py)
    return unet.to(memory_format=torch.channels_last)


def load_model_bundle(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild every network stored in `path` (eval mode, on `device`); CheckpointError if it cannot."""
    bundle = load_bundle(path)
    if not bundle.has("generator"):
        held = ", ".join(sorted(bundle.tensors)) or "none"
        raise CheckpointError(f"{path}: holds no generator (networks: {held}); a model bundle needs one -- "
                              "is this a U-Net-only checkpoint?")
    gen_cfg = _config(bundle, "generator", GeneratorConfig)
    # channels-last: batch-1 forward 5.6 -> 4.1 ms at 64² on 2 CPU threads (benchmarks/bench_generator.py)
    generator = _build(bundle, "generator", LayeredGenerator, gen_cfg, device).to(memory_format=torch.channels_last)
    phi = _build(bundle, "phi", LatentTransform, _config(bundle, "phi", PhiConfig), device) \
        if bundle.has("phi") else None
    perturb = _config(bundle, "perturb", PerturbConfig) if "perturb" in bundle.configs else PerturbConfig()
    if phi is not None and phi.cfg.eps_dim != perturb.eps_dim:
        raise CheckpointError(f"{path}: phi takes {phi.cfg.eps_dim}-d eps but the perturbation config has "
                              f"{perturb.eps_dim} degrees of freedom")
    unet = _unet(bundle, device) if bundle.has("unet") else None
    disc = _build(bundle, "discriminator", build_discriminator,
                  _config(bundle, "discriminator", DiscriminatorConfig), device) \
        if bundle.has("discriminator") else None
    return ModelBundle(generator=generator, phi=phi, perturb=perturb, unet=unet, discriminator=disc,
                       metadata=dict(bundle.metadata), path=str(path),
                       unet_size=unet.input_size if unet is not None else None, domain=domain_of(bundle))


def save_model_bundle(path: str | os.PathLike, generator: LayeredGenerator, phi: LatentTransform | None,
                      perturb_cfg: PerturbConfig, unet: Segmenter | None = None,
                      discriminator: Discriminator | None = None, metadata: dict[str, Any] | None = None,
                      half: bool = False, unet_size: int | None = None, domain: DomainStats | None = None) -> None:
    """Write the networks with their configs (atomically); `half` stores fp16 weights (half the size).

    `unet_size` defaults to the U-Net's input_size, else the generator's resolution. `domain` statistics
    stay fp32 even with `half`: they are small, and their variances span more than fp16 holds well.
    """
    networks: dict[str, nn.Module | dict[str, torch.Tensor]] = {"generator": generator}
    configs: dict[str, Any] = {"generator": generator.cfg, "perturb": perturb_cfg}
    meta = dict(metadata or {})
    if phi is not None:
        networks["phi"], configs["phi"] = phi, phi.cfg
    if unet is not None:
        networks["unet"], configs["unet"] = unet, unet.cfg
        meta["unet_size"] = unet_size or unet.input_size or generator.cfg.size
    if discriminator is not None:
        networks["discriminator"], configs["discriminator"] = discriminator, discriminator.cfg
    if domain is not None:
        networks[DOMAIN_ENTRY] = domain.tensors()
    save_bundle(path, networks, configs, meta, half=half, keep_full=(DOMAIN_ENTRY,))


def assemble_bundle(gan_path: str | os.PathLike, unet_path: str | os.PathLike, out: str | os.PathLike,
                    score: Callable[[Segmenter], dict[str, Any]] | None = None, half: bool = False,
                    extra: dict[str, Any] | None = None, postprocess: str | None = None) -> dict[str, Any] | None:
    """One bundle from a GAN file and a U-Net trained on its pairs afterwards (a longer or retrained U-Net).

    The GAN file's ``metrics`` and ``unet`` metadata describe whichever U-Net it held before, so they are
    replaced: ``metrics`` by what `score` measures on the U-Net *as stored* (rounded to fp16 first when
    `half`), or dropped; ``unet`` by the U-Net checkpoint's own metadata and training config. The app
    shows ``metrics`` as the bundle's scores, and stale ones would credit the new U-Net with the old
    one's numbers. `postprocess` sets the U-Net's mask cleaning (``UNetConfig.postprocess``; None keeps
    the checkpoint's) before it is scored and stored. Gives the metrics written.
    """
    gan = load_model_bundle(gan_path)
    unet_file = load_bundle(unet_path, require=["unet"])
    unet = _unet(unet_file, "cpu")
    if postprocess is not None:
        unet.cfg = replace(unet.cfg, postprocess=postprocess)  # checked against the knob's choices
    if half:  # score exactly the weights the file will hold
        with torch.no_grad():
            for t in unet.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
    metrics = score(unet) if score is not None else None
    meta = {k: v for k, v in gan.metadata.items() if k not in ("metrics", "unet", "unet_size")}
    if isinstance(meta.get("wall_s"), dict):  # a pipeline's: keep the GAN's time, not the old U-Net's
        meta["wall_s"] = {k: v for k, v in meta["wall_s"].items() if k not in ("unet", "eval", "bundle")}
    meta["unet"] = {k: v for k, v in unet_file.metadata.items() if k != "unet_size"}
    meta["unet"]["source"] = os.fspath(unet_path)
    if "unet_train" in unet_file.configs:
        meta["unet"]["train"] = unet_file.configs["unet_train"]
    if metrics is not None:
        meta["metrics"] = metrics
    meta.update(extra or {})
    save_model_bundle(out, gan.generator, gan.phi, gan.perturb, unet, gan.discriminator, meta, half=half,
                      domain=gan.domain)  # the same training images: their statistics still hold
    return metrics
