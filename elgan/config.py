"""Typed configuration of every network and program, saved as JSON with each checkpoint and run.

Networks are rebuilt from their config alone (as nanoGPT rebuilds from ``model_args``), so a bundle
needs no code-side defaults to load. Training configs are validated in ``__post_init__`` so that a bad
flag fails before any work starts, with a message that names the field.

Each knob is defined once, as a field made by :func:`knob`: its default, its one-line meaning (the CLIs'
help) and its valid values (choices or bounds), which :func:`check_knobs` enforces for every config and
``training/_cli.add_knob`` turns into a flag. Checks about relations between fields stay by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

SIZES = (32, 64, 128)
ABLATIONS = ("A", "B", "C", "D", "E")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # see elgan/train/precision.py
DEVICES = ("auto", "cpu", "cuda")
DISCRIMINATORS = ("paper", "projected")  # the paper's D | Projected GAN's D on pretrained features
PERCEPTUAL_NETS = ("rotnet", "effnet")  # eq. (8)'s net: self-supervised RotNet | ImageNet EfficientNet-Lite0
FD_NETS = ("rotnet", "lite0")  # model-selection FD: in the run's RotNet | in pretrained Lite0 features
KNOB = "knob"  # the metadata key of a knob's help, choices and bounds

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def knob(default: Any, help: str, *, choices: tuple[Any, ...] | None = None, lo: float | None = None,
         hi: float | None = None, gt: float | None = None, lt: float | None = None) -> Any:
    """A config field defined once: default, one-line meaning and valid values (``choices``, or bounds:
    ``lo`` / ``hi`` inclusive, ``gt`` / ``lt`` exclusive), for :func:`check_knobs` and the CLIs' flags."""
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "gt": gt, "lt": lt}
    return field(default=default, metadata={KNOB: meta})


def knob_info(cls: type, name: str) -> dict[str, Any]:
    """A knob's help, choices and bounds; KeyError if the field is not a knob."""
    return next(f for f in fields(cls) if f.name == name).metadata[KNOB]


def default_of(cls: type, name: str) -> Any:
    return next(f for f in fields(cls) if f.name == name).default


def knob_range(info: dict[str, Any]) -> str:
    """The bounds of a knob in words: "in [1, 256]", ">= 0", "in (0, 1)"; "" when it has none."""
    low = f"[{info['lo']}" if info["lo"] is not None else (f"({info['gt']}" if info["gt"] is not None else "")
    high = f"{info['hi']}]" if info["hi"] is not None else (f"{info['lt']})" if info["lt"] is not None else "")
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    return ("<= " if high[-1] == "]" else "< ") + high[:-1] if high else ""


def check_knobs(cfg: Any) -> None:
    """The one check of every knob of a config against its choices and bounds (ConfigError names it)."""
    for f in fields(cfg):
        info = f.metadata.get(KNOB)
        if info is None:
            continue
        value, name = getattr(cfg, f.name), f"{type(cfg).__name__}.{f.name}"
        if info["choices"] is not None:
            _check(value in info["choices"], f"{name} must be one of {info['choices']}, got {value!r}")
        lo, hi, gt, lt = info["lo"], info["hi"], info["gt"], info["lt"]
        inside = ((lo is None or value >= lo) and (hi is None or value <= hi) and (gt is None or value > gt)
                  and (lt is None or value < lt))
        _check(inside, f"{name} must be {knob_range(info)}, got {value!r}")


@dataclass(frozen=True)
class GeneratorConfig:
    size: int = knob(64, "output resolution", choices=SIZES)
    z_dim: int = knob(100, "public code z ~ N(0, I), shared by background, mask and foreground (Phi shifts its "
                      "first 10 dims)", lo=10)
    n_categories: int = knob(200, "private code c ~ Cat(n_categories), foreground only", lo=1)
    group_size: int = knob(10, "c_sup = c // group_size (FineGAN's parent code)", lo=1)
    width: int = knob(16, "channel multiplier (FineGAN's ngf; the paper's is 64); the 4x4 stage has 16*width "
                      "channels", lo=1, hi=256)
    fg_res_blocks: int = knob(2, "residual blocks of the foreground (child) stage")

    def __post_init__(self) -> None:
        check_knobs(self)
        _check(self.n_categories % self.group_size == 0, "n_categories must be a multiple of group_size")

    @property
    def n_super(self) -> int:
        """The number of super-categories c_sup: derived here alone."""
        return self.n_categories // self.group_size


@dataclass(frozen=True)
class DiscriminatorConfig:
    size: int = knob(64, "input resolution", choices=SIZES)
    width: int = knob(16, "channels of D's first block, doubling at each downsampling (capped at 16*width); "
                      "E_pi's first block has max(4, width // 2)", lo=1, hi=256)
    n_categories: int = knob(200, "logits of the c-recovery head E_x that shares D's trunk")
    n_super: int = knob(20, "logits of the separate c_sup-recovery network E_pi on the mask")
    recovery_gain: float = knob(10.0, "fixed scale of the recovery logits (spectral norm keeps them ~0.01 at init)")
    kind: str = knob("paper", "paper: the paper's conv D | projected: Projected GAN's D on frozen ImageNet "
                     "EfficientNet-Lite0 features", choices=DISCRIMINATORS)
    proj_channels: int = knob(64, "projected D: channels of the fixed random cross-channel / cross-scale mixing",
                              lo=1, hi=512)
    proj_input_size: int = knob(0, "projected D: resize images to this before the pretrained net (0 = size)",
                                choices=(0, 32, 64, 128, 224, 256))

    def __post_init__(self) -> None:
        check_knobs(self)


@dataclass(frozen=True)
class PerturbConfig:
    translate: bool = knob(True, "perturb position t_x, t_y")
    scale: bool = knob(True, "perturb isotropic scale s")
    rotate: bool = knob(True, "perturb rotation alpha")
    max_translate: float = knob(0.125, "|t| <= max_translate, in units of the image side (paper: 0.125)",
                                lo=0.0, hi=0.5)
    max_log2_scale: float = knob(0.2, "|log2 s| <= this (paper: 0.2)", lo=0.0, hi=1.0)
    max_rotate_deg: float = knob(15.0, "|alpha| <= this, degrees (paper: 15)", lo=0.0, hi=180.0)

    def __post_init__(self) -> None:
        check_knobs(self)

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
    eps_dim: int = knob(4, "d_eps: enabled degrees of freedom of the affine perturbation", lo=0, hi=4)
    t_dim: int = knob(10, "d_T: Phi shifts only the first t_dim dims of z (appendix A)", lo=1)
    z_dim: int = knob(100, "dimension of z")
    hidden: int = knob(64, "width of the 4-layer MLP")
    gain: float = knob(1.0, "free walk: multiplies Phi's output (1: the paper's MLP as initialised) | "
                       "fixed_length walk: the shift's length at |eps| = 1", gt=0)
    walk: str = knob("free", "free: z + Phi(eps), the paper's | fixed_length: Phi picks the direction, "
                     "gain * |eps| the length", choices=WALKS)

    def __post_init__(self) -> None:
        check_knobs(self)
        _check(self.t_dim <= self.z_dim, "t_dim must be in [1, z_dim]")


MOMENT_REGS = ("batch", "known")  # see losses.moment_regularizer
EQUI_FORMS = ("absolute", "relative")  # see losses.equivariance_loss


@dataclass(frozen=True)
class LossConfig:
    recovery: bool = knob(True, "private code recovery, eq. (11)")
    mask_size: bool = knob(False, "PerturbGAN's mask-size loss (config A)")
    equivariance: bool = knob(True, "equivariance loss, eq. (8)")
    gamma_r: float = knob(1.0, "weight of recovery")
    gamma_b: float = knob(2.0, "weight of binarisation")
    gamma_equi: float = knob(0.5, "final weight of the equivariance loss (the paper's 0.5)")
    gamma_equi_pixel: float = knob(0.0, "weight, relative to eq. (8), of its pixel twin |G(T^Z z) - T^X G(z)|_1 / "
                                   "|G(z) - T^X G(z)|_1 (0: off, as in the paper)", lo=0)
    gamma_reg: float = knob(1.0, "weight of Phi's moment regulariser (the paper does not state its value)")
    gamma_size: float = knob(2.0, "weight of the mask-size loss (PerturbGAN uses 2)")
    mask_size_eta: float = knob(0.25, "smallest tolerated mask area of each sample, the floor of PerturbGAN's "
                                "mask-size loss (its published command: 0.25)", lo=0.0, hi=1.0)
    mask_ceiling: float = knob(0.0, "largest tolerated batch-mean mask area; above it G pays gamma_size x the "
                               "excess (0: off, as in the paper)", lo=0.0, hi=1.0)
    equi_rampup_iters: int = knob(-1, "t_1 of gamma_e(t) = min(1, t / t_1) * gamma_equi, iterations; -1: "
                                  "rampup_iters(iters), 400/810 of the run as the paper's 400 of 810 epochs", lo=-1)
    equi_detach_target: bool = knob(True, "stop gradients through T^X G(z, c) in eq. (8): G cannot move the target")
    moment_reg: str = knob("batch", "L_reg's estimate: batch (the paper's, z's sampling noise included) | known "
                           "(z's moments taken as known)", choices=MOMENT_REGS)
    equi_form: str = knob("absolute", "eq. (8) as written | relative (divided by the distance of the unmoved "
                          "image to the target)", choices=EQUI_FORMS)
    gamma_bg: float = knob(0.0, "weight of D's 'background layer alone is fake' term (0: off, as in the paper)", lo=0)
    gamma_indep: float = knob(0.0, "weight of ILSGAN's layer-independence term, losses.layer_independence_loss "
                              "(0: off, as in the paper; ILSGAN: 0.2 for its first 400k images, then 1)", lo=0)

    def __post_init__(self) -> None:
        check_knobs(self)


def rampup_iters(iters: int) -> int:
    """The one default of t_1: the paper ramps the equivariance weight up over 400 of its 810 epochs."""
    return max(1, iters * 400 // 810)


def lr_drop_step(steps: int) -> int:
    """The one default of the U-Net's lr drop: the paper drops at 8,000 of its 12,000 steps."""
    return steps * 2 // 3


def ablation(name: str) -> tuple[PerturbConfig, LossConfig]:
    """Configurations A-E of Table 3: each adds one ingredient to the previous one."""
    _check(name in ABLATIONS, f"ablation config must be one of {ABLATIONS}, got {name!r}")
    perturb = PerturbConfig(translate=True, scale=name >= "C", rotate=name >= "D")
    loss = LossConfig(recovery=name >= "B", mask_size=name == "A", equivariance=name == "E")
    return perturb, loss


def mask_floor(eta: float | None) -> dict[str, Any]:
    """LossConfig fields that put PerturbGAN's per-sample floor on the mask area at `eta` beside any
    configuration (its L_size, config A's only at 0.25); None leaves the configuration's own choice."""
    return {} if eta is None else {"mask_size": True, "mask_size_eta": eta}


# what a --mask-floor flag that is not given means (train_gan and the pipeline)
MASK_FLOOR_UNSET = f"off; config A: on at {default_of(LossConfig, 'mask_size_eta')}"


@dataclass(frozen=True)
class RunControl:
    """Where and for how long a training program runs: the knobs the GAN and U-Net trainers share."""

    max_minutes: float = knob(0.0, "stop (with a checkpoint) after this much wall time; 0 = no limit", lo=0)
    device: str = knob("auto", "auto | cpu | cuda (under torchrun: cuda = one GPU per process, LOCAL_RANK)",
                       choices=DEVICES)
    threads: int = knob(0, "torch intra-op threads on CPU; 0 = torch's default", lo=0)
    precision: str = knob("auto", "auto (bf16 on CUDA GPUs that have it, else fp32) | fp32 | bf16 | fp16 "
                          "(GradScaler)", choices=PRECISIONS)


@dataclass(frozen=True)
class GanTrainConfig(RunControl):
    data: str = knob("synthetic", "data spec: synthetic | cub:PATH | folder:PATH | lsun:PATH")
    data_limit: int = knob(0, "use only the first N training images (0 = all); for tests and quick trials", lo=0)
    size: int = knob(64, "working resolution of G and D", choices=SIZES)
    ablation: str = knob("E", "Table 3 configuration, A..E (E = full ELGAN)", choices=ABLATIONS)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    phi: PhiConfig = field(default_factory=PhiConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    batch: int = knob(32, "images per D and G step (the moment regulariser needs a batch)", lo=2)
    iters: int = knob(20000, "total training iterations (one D step + one G step each)", lo=1, hi=10_000_000)
    lr: float = knob(2e-4, "Adam learning rate of G, D, E and Phi", gt=0, lt=1)
    beta1: float = knob(0.5, "Adam beta1", lo=0, lt=1)
    beta2: float = knob(0.999, "Adam beta2", lo=0, lt=1)
    seed: int = knob(0, "seeds every random draw of the run", lo=0)
    hflip: bool = knob(True, "random horizontal flip of real images")
    rrc: bool = knob(True, "RandomResizedCrop of real images (appendix A)")
    rrc_scale: float = knob(0.8, "smallest area fraction RandomResizedCrop keeps", lo=0.05, hi=1.0)
    diffaugment: str = knob("color", "DiffAugment policy on real and fake for D, comma-separated: color, "
                            "translation, cutout ('' = none)")
    perceptual: str = knob("rotnet", "eq. (8)'s perceptual net: rotnet (self-supervised on the run's images) | "
                           "effnet (ImageNet EfficientNet-Lite0)", choices=PERCEPTUAL_NETS)
    fd_net: str = knob("lite0", "model-selection FD: lite0 (FD-Lite0, compares across runs) | rotnet (FD-RotNet, "
                       "within one run)", choices=FD_NETS)
    rotnet_iters: int = knob(600, "steps of the self-supervised RotNet that provides perceptual features", lo=0)
    rotnet: str = knob("", "path of a perceptual net to use instead (RotNet safetensors or torchvision VGG16 weights)")
    log_every: int = knob(25, "iterations between JSON log lines", lo=1)
    sample_every: int = knob(500, "iterations between sample grids", lo=1)
    ckpt_every: int = knob(500, "iterations between (atomic) checkpoints", lo=1)
    fd_every: int = knob(1000, "iterations between Frechet distances; the lowest is kept as best.safetensors", lo=1)
    fd_samples: int = knob(1000, "images per side of the Frechet distance", lo=1)
    inception: str = knob("", "Inception-v3 weights file (torch-fidelity's): select by FID instead of FD, log "
                          "precision/recall")
    stream: bool = knob(False, "lsun:PATH LMDB only: stream real images via DataLoader workers, not from memory")
    data_workers: int = knob(4, "DataLoader worker processes per rank when streaming", lo=0)
    init: str = knob("", "GAN checkpoint whose G, D, E_pi and Phi weights start the run (fine-tuning); '' = fresh")

    def __post_init__(self) -> None:
        check_knobs(self)
        _check(not self.stream or self.data.strip().lower().startswith("lsun:"),
               f"stream reads an LSUN LMDB export (data lsun:PATH), not {self.data!r}")
        for policy in filter(None, self.diffaugment.split(",")):
            _check(policy in ("color", "translation", "cutout"),
                   f"diffaugment policies are color, translation, cutout; got {policy!r}")
        _check(self.generator.size == self.size and self.discriminator.size == self.size,
               "generator.size and discriminator.size must equal size")
        if self.loss.equi_rampup_iters < 0:  # resolved once, here, and saved: a resumed run keeps its t_1
            resolved = dataclasses.replace(self.loss, equi_rampup_iters=rampup_iters(self.iters))
            object.__setattr__(self, "loss", resolved)


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = knob(3, "RGB input in [-1, 1]")
    base: int = knob(16, "U-Net channels at the first level; doubles at each of `depth` downsamplings", lo=1, hi=128)
    depth: int = knob(4, "number of downsamplings (scratch encoder; the lite0 encoder has its own five)", lo=1, hi=6)
    encoder: str = knob("scratch", "scratch: the paper's plain U-Net from random weights | lite0: the frozen ImageNet "
                        "EfficientNet-Lite0 (elgan.nets.features) as encoder, only the decoder is trained",
                        choices=("scratch", "lite0"))
    encoder_scale: int = knob(2, "lite0: the image is upsampled by this before the pretrained net (its deepest "
                              "map is 1/32 of its input)", choices=(1, 2, 4))
    postprocess: str = knob("none", "the thresholded mask as predicted | largest_filled: keep its largest 8-connected "
                            "region and fill that region's holes (one object per photo; elgan.cleanup), in the "
                            "evaluation, the app and the folder tool alike; training is unaffected",
                            choices=("none", "largest_filled"))

    def __post_init__(self) -> None:
        check_knobs(self)

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this (the encoder's total stride at the input's scale)."""
        return 2**self.depth if self.encoder == "scratch" else 32 // self.encoder_scale


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


def gan_config(size: int = default_of(GanTrainConfig, "size"),
               ablation_name: str = default_of(GanTrainConfig, "ablation"),
               width: int = default_of(GeneratorConfig, "width"), d_width: int | None = None,
               categories: int = default_of(GeneratorConfig, "n_categories"),
               group_size: int = default_of(GeneratorConfig, "group_size"),
               disc: str = default_of(DiscriminatorConfig, "kind"), **overrides: Any) -> GanTrainConfig:
    """A consistent GanTrainConfig: sub-configs follow size, ablation, width, the kind of D and the size
    of c (the paper's 200 fine categories in groups of 10; a single-class collection may want fewer).
    ``d_width`` None (or 0, as configs saved before wrote it) is the generator's width; ``phi_gain`` and
    ``phi_walk`` set PhiConfig's gain and walk, ``loss_overrides`` LossConfig fields, ``perturb_overrides``
    the ablation's PerturbConfig ranges (which directions are on stays the ablation's)."""
    perturb, loss = ablation(ablation_name)
    perturb = replace(perturb, **overrides.pop("perturb_overrides", {}))
    loss_over = overrides.pop("loss_overrides", {})
    phi_over = {k: overrides.pop("phi_" + k) for k in ("gain", "walk") if "phi_" + k in overrides}
    gen = GeneratorConfig(size=size, width=width, n_categories=categories, group_size=group_size)
    # the projected D's E_x reads pretrained features that are not spectrally bounded: no temperature
    gain = 1.0 if disc == "projected" else default_of(DiscriminatorConfig, "recovery_gain")
    disc = DiscriminatorConfig(size=size, width=d_width or width, n_categories=gen.n_categories,
                               n_super=gen.n_super, kind=disc, recovery_gain=gain)
    phi = PhiConfig(eps_dim=perturb.eps_dim, z_dim=gen.z_dim, **phi_over)
    return GanTrainConfig(size=size, ablation=ablation_name, generator=gen, discriminator=disc, phi=phi,
                          perturb=perturb, loss=replace(loss, **loss_over), **overrides)
