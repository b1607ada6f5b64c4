"""Typed configuration of every network and program, saved as JSON with each checkpoint and run.

Networks are rebuilt from their config alone (as nanoGPT rebuilds from ``model_args``), so a bundle
needs no code-side defaults to load. Training configs are validated in ``__post_init__`` so that a bad
flag fails before any work starts, with a message that names the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

SIZES = (32, 64, 128)
ABLATIONS = ("A", "B", "C", "D", "E")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # see elgan/precision.py
DISCRIMINATORS = ("paper", "projected")  # the paper's D | Projected GAN's D on pretrained features
PERCEPTUAL_NETS = ("rotnet", "effnet")  # eq. (8)'s net: self-supervised RotNet | ImageNet EfficientNet-Lite0
FD_NETS = ("rotnet", "lite0")  # model-selection FD: in the run's RotNet | in pretrained Lite0 features

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class GeneratorConfig:
    size: int = 64  # output resolution (32, 64 or 128)
    z_dim: int = 100  # public code z ~ N(0, I), shared by background, mask and foreground
    n_categories: int = 200  # private code c ~ Cat(n_categories), foreground only
    group_size: int = 10  # c_sup = c // group_size (FineGAN's parent code)
    width: int = 16  # channel multiplier (FineGAN's ngf); the 4x4 stage has 16*width channels
    fg_res_blocks: int = 2  # residual blocks of the foreground (child) stage

    def __post_init__(self) -> None:
        _check(self.size in SIZES, f"size must be one of {SIZES}, got {self.size}")
        _check(self.z_dim >= 10, f"z_dim must be >= 10 (Phi shifts its first 10 dims), got {self.z_dim}")
        _check(self.n_categories >= 1, "n_categories must be >= 1")
        _check(self.group_size >= 1 and self.n_categories % self.group_size == 0,
               "n_categories must be a multiple of group_size")
        _check(1 <= self.width <= 256, f"width must be in [1, 256], got {self.width}")

    @property
    def n_super(self) -> int:
        return self.n_categories // self.group_size


@dataclass(frozen=True)
class DiscriminatorConfig:
    size: int = 64  # input resolution
    width: int = 16  # channels of the first block; doubles at each downsampling (capped at 16*width)
    n_categories: int = 200  # logits of the c-recovery head E_x that shares D's trunk
    n_super: int = 20  # logits of the separate c_sup-recovery network E_pi on the mask
    recovery_gain: float = 10.0  # fixed scale of the recovery logits (spectral norm keeps them ~0.01 at init)
    kind: str = "paper"  # paper: the paper's conv D | projected: D on frozen ImageNet EfficientNet-Lite0 features
    proj_channels: int = 64  # projected D: channels of the fixed random cross-channel / cross-scale mixing
    proj_input_size: int = 0  # projected D: resize images to this before the pretrained net (0 = size)

    def __post_init__(self) -> None:
        _check(self.size in SIZES, f"size must be one of {SIZES}, got {self.size}")
        _check(1 <= self.width <= 256, f"width must be in [1, 256], got {self.width}")
        _check(self.kind in DISCRIMINATORS, f"discriminator kind must be one of {DISCRIMINATORS}, got {self.kind!r}")
        _check(1 <= self.proj_channels <= 512, "proj_channels must be in [1, 512]")
        _check(self.proj_input_size in (0, 32, 64, 128, 224, 256),
               "proj_input_size must be 0 (the image size) or one of 32, 64, 128, 224, 256")


@dataclass(frozen=True)
class PerturbConfig:
    translate: bool = True  # perturb position t_x, t_y
    scale: bool = True  # perturb isotropic scale s
    rotate: bool = True  # perturb rotation alpha
    max_translate: float = 0.125  # |t| <= max_translate, in units of the image side (paper: 0.125)
    max_log2_scale: float = 0.2  # |log2 s| <= this (paper: 0.2)
    max_rotate_deg: float = 15.0  # |alpha| <= this, degrees (paper: 15)

    @property
    def eps_names(self) -> tuple[str, ...]:
        """Names of the enabled degrees of freedom, in the order of the dimensions of epsilon."""
        names = []
        if self.translate:
            names += ["tx", "ty"]
        if self.rotate:
            names.append("rotation")
        if self.scale:
            names.append("scale")
        return tuple(names)

    @property
    def eps_dim(self) -> int:
        return len(self.eps_names)


WALKS = ("free", "fixed_length")  # see nets.phi.LatentTransform.shift


@dataclass(frozen=True)
class PhiConfig:
    eps_dim: int = 4  # d_eps: enabled degrees of freedom of the affine perturbation
    t_dim: int = 10  # d_T: Phi shifts only the first t_dim dims of z (appendix A)
    z_dim: int = 100  # dimension of z
    hidden: int = 64  # width of the 4-layer MLP
    gain: float = 1.0  # free walk: multiplies the MLP's output; fixed_length walk: the shift's norm at |eps| = 1
    walk: str = "free"  # free: z + Phi(eps), the paper's | fixed_length: Phi picks the direction, |eps| the length

    def __post_init__(self) -> None:
        _check(0 <= self.eps_dim <= 4, "eps_dim must be in [0, 4]")
        _check(self.gain > 0, f"Phi gain must be > 0, got {self.gain}")
        _check(self.walk in WALKS, f"Phi walk must be one of {WALKS}, got {self.walk!r}")
        _check(1 <= self.t_dim <= self.z_dim, "t_dim must be in [1, z_dim]")


MOMENT_REGS = ("batch", "known")  # see losses.moment_regularizer
EQUI_FORMS = ("absolute", "relative")  # see losses.equivariance_loss


@dataclass(frozen=True)
class LossConfig:
    recovery: bool = True  # private code recovery, eq. (11)
    mask_size: bool = False  # PerturbGAN's mask-size loss (config A)
    equivariance: bool = True  # equivariance loss, eq. (8)
    gamma_r: float = 1.0  # weight of recovery
    gamma_b: float = 2.0  # weight of binarisation
    gamma_equi: float = 0.5  # final weight of the equivariance loss
    gamma_reg: float = 1.0  # weight of Phi's moment regulariser
    gamma_size: float = 2.0  # weight of the mask-size loss (PerturbGAN uses 2)
    mask_size_eta: float = 0.25  # minimal tolerated mean mask (PerturbGAN's published command: 0.25)
    equi_rampup_iters: int = -1  # t_1 of gamma_e(t) = min(1, t / t_1) * gamma_equi, iterations; -1: rampup_iters
    equi_detach_target: bool = True  # stop gradients through T^X G(z, c) in eq. (8): G cannot move the target
    moment_reg: str = "batch"  # L_reg's estimate: batch (the paper's, z's sampling noise included) | known
    equi_form: str = "absolute"  # eq. (8) as written | relative (divided by the unmoved image's distance)
    gamma_bg: float = 0.0  # weight of D's "background layer alone is fake" term (0: off, as in the paper)

    def __post_init__(self) -> None:
        _check(self.moment_reg in MOMENT_REGS, f"moment_reg must be one of {MOMENT_REGS}, got {self.moment_reg!r}")
        _check(self.gamma_bg >= 0, f"gamma_bg must be >= 0, got {self.gamma_bg}")
        _check(self.equi_form in EQUI_FORMS, f"equi_form must be one of {EQUI_FORMS}, got {self.equi_form!r}")


def rampup_iters(iters: int) -> int:
    """The one default of t_1: the paper ramps the equivariance weight up over 400 of its 810 epochs."""
    return max(1, iters * 400 // 810)


def ablation(name: str) -> tuple[PerturbConfig, LossConfig]:
    """Configurations A-E of Table 3: each adds one ingredient to the previous one."""
    _check(name in ABLATIONS, f"ablation config must be one of {ABLATIONS}, got {name!r}")
    perturb = PerturbConfig(translate=True, scale=name >= "C", rotate=name >= "D")
    loss = LossConfig(recovery=name >= "B", mask_size=name == "A", equivariance=name == "E")
    return perturb, loss


@dataclass(frozen=True)
class GanTrainConfig:
    data: str = "synthetic"  # data spec: synthetic | cub:PATH | folder:PATH | lsun:PATH
    data_limit: int = 0  # use only the first N training images (0 = all); for tests and quick trials
    size: int = 64  # working resolution of G and D
    ablation: str = "E"  # Table 3 configuration, A..E (E = full ELGAN)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    phi: PhiConfig = field(default_factory=PhiConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    batch: int = 32  # images per D and G step
    iters: int = 20000  # total training iterations (one D step + one G step each)
    lr: float = 2e-4  # Adam learning rate of G, D, E and Phi
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    seed: int = 0  # seeds every random draw of the run
    hflip: bool = True  # random horizontal flip of real images
    rrc: bool = True  # RandomResizedCrop of real images (appendix A)
    rrc_scale: float = 0.8  # smallest area fraction RandomResizedCrop keeps
    diffaugment: str = "color"  # DiffAugment policy on real and fake for D: "", color, translation, cutout
    perceptual: str = "rotnet"  # eq. (8)'s perceptual net: rotnet (on the run's images) | effnet (ImageNet Lite0)
    fd_net: str = "lite0"  # selection FD: lite0 (FD-Lite0, compares across runs) | rotnet (FD-RotNet, one run)
    rotnet_iters: int = 600  # steps of the self-supervised RotNet that provides perceptual features
    rotnet: str = ""  # path of a perceptual net to use instead (RotNet safetensors or VGG16 weights)
    log_every: int = 25  # iterations between JSON log lines
    sample_every: int = 500  # iterations between sample grids
    ckpt_every: int = 500  # iterations between (atomic) checkpoints
    fd_every: int = 1000  # iterations between Frechet distances; the lowest is kept as best.safetensors
    fd_samples: int = 1000  # images per side of the Frechet distance
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall time; 0 = no limit
    device: str = "auto"  # auto | cpu | cuda (under torchrun: cuda = one GPU per process, LOCAL_RANK)
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    precision: str = "auto"  # auto (bf16 on CUDA GPUs that have it, else fp32) | fp32 | bf16 | fp16 (GradScaler)
    inception: str = ""  # Inception-v3 weights file: select by FID (torch-fidelity) instead of FD-RotNet
    stream: bool = False  # lsun:PATH LMDB only: stream real images via DataLoader workers, not from memory
    data_workers: int = 4  # DataLoader worker processes per rank when streaming
    init: str = ""  # GAN checkpoint whose G, D, E_pi and Phi weights start the run (fine-tuning); "" = fresh

    def __post_init__(self) -> None:
        _check(self.size in SIZES, f"size must be one of {SIZES}, got {self.size}")
        _check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _check(not self.stream or self.data.strip().lower().startswith("lsun:"),
               f"stream reads an LSUN LMDB export (data lsun:PATH), not {self.data!r}")
        _check(self.data_workers >= 0, "data_workers must be >= 0")
        _check(self.ablation in ABLATIONS, f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        _check(self.batch >= 2, f"batch must be >= 2 (moment regulariser needs a batch), got {self.batch}")
        _check(1 <= self.iters <= 10_000_000, f"iters must be in [1, 1e7], got {self.iters}")
        _check(0 < self.lr < 1, f"lr must be in (0, 1), got {self.lr}")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)")
        _check(0.05 <= self.rrc_scale <= 1.0, "rrc_scale must be in [0.05, 1]")
        _check(self.max_minutes >= 0, "max_minutes must be >= 0")
        _check(self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda")
        for name in ("log_every", "sample_every", "ckpt_every", "fd_every", "fd_samples"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1")
        for policy in filter(None, self.diffaugment.split(",")):
            _check(policy in ("color", "translation", "cutout"),
                   f"diffaugment policies are color, translation, cutout; got {policy!r}")
        _check(self.generator.size == self.size and self.discriminator.size == self.size,
               "generator.size and discriminator.size must equal size")
        _check(self.perceptual in PERCEPTUAL_NETS,
               f"perceptual must be one of {PERCEPTUAL_NETS}, got {self.perceptual!r}")
        _check(self.fd_net in FD_NETS, f"fd_net must be one of {FD_NETS}, got {self.fd_net!r}")
        if self.loss.equi_rampup_iters < 0:  # resolved once, here, and saved: a resumed run keeps its t_1
            resolved = dataclasses.replace(self.loss, equi_rampup_iters=rampup_iters(self.iters))
            object.__setattr__(self, "loss", resolved)


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 3  # RGB input in [-1, 1]
    base: int = 16  # channels of the first level; doubles at each of `depth` downsamplings
    depth: int = 4  # number of downsamplings

    def __post_init__(self) -> None:
        _check(1 <= self.base <= 128, "unet base must be in [1, 128]")
        _check(1 <= self.depth <= 6, "unet depth must be in [1, 6]")


def to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) config dataclass; unknown keys are an error so typos never pass silently."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    _check(not unknown, f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        ftype = known[name].type
        sub = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        kwargs[name] = from_dict(sub, value) if sub is not None and isinstance(value, dict) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad {cls.__name__}: {exc}") from exc


def replace(cfg: T, **changes: Any) -> T:
    return dataclasses.replace(cfg, **changes)


_DATACLASSES: dict[str, type] = {
    c.__name__: c
    for c in (GeneratorConfig, DiscriminatorConfig, PerturbConfig, PhiConfig, LossConfig, GanTrainConfig,
              UNetConfig)
}


def register(cls: type[T]) -> type[T]:
    """Let ``from_dict`` rebuild configs defined in other modules when they are nested."""
    _DATACLASSES[cls.__name__] = cls
    return cls


def gan_config(size: int = 64, ablation_name: str = "E", width: int = 16, d_width: int | None = None,
               categories: int = 200, group_size: int = 10, disc: str = "paper", **overrides: Any) -> GanTrainConfig:
    """A consistent GanTrainConfig: sub-configs follow size, ablation, width, the kind of D and the size
    of c (the paper's 200 fine categories in groups of 10; a single-class collection may want fewer)."""
    perturb, loss = ablation(ablation_name)
    loss_over = overrides.pop("loss_overrides", {})
    gen = GeneratorConfig(size=size, width=width, n_categories=categories, group_size=group_size)
    # the projected D's E_x reads pretrained features that are not spectrally bounded: no temperature
    disc = DiscriminatorConfig(size=size, width=d_width or width, n_categories=gen.n_categories,
                               n_super=gen.n_super, kind=disc, recovery_gain=1.0 if disc == "projected" else 10.0)
    phi = PhiConfig(eps_dim=perturb.eps_dim, z_dim=gen.z_dim, gain=overrides.pop("phi_gain", 1.0),
                    walk=overrides.pop("phi_walk", "free"))
    return GanTrainConfig(size=size, ablation=ablation_name, generator=gen, discriminator=disc, phi=phi,
                          perturb=perturb, loss=replace(loss, **loss_over), **overrides)
