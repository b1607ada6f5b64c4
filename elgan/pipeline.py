"""The whole method in one call (Fig. 1): train the ELGAN, train a U-Net on its pairs, score it, bundle it.

Stages and their folders under the run folder::

    config.json                  the resolved PipelineConfig
    features/                    the RotNet the GAN needs (eq. (8), FD-RotNet), from a cache shared by runs
    gan/    (train_gan)          best.safetensors = lowest-FD GAN (the paper's model selection)
    unet/   (train_unet)         best.safetensors = best IoU on held-out synthetic pairs (ILSGAN)
    eval.json                    ACC / IoU / mIoU on eval_data's eval_split (when it has masks)
    bundle.safetensors           generator, phi, unet, discriminator + configs + metrics, for the app

A stage that finished writes ``DONE`` (its result and wall time) in its folder (evaluation: eval.json);
``resume`` skips finished stages, resumes an interrupted one from its state, and starts the others. A
stage stopped by its wall-time cap counts as finished: the cap is the budget.

The features stage (elgan/train/feature_stage.py) trains the self-supervised RotNet once per data, size,
seed and RotNet steps into ``feature_cache`` and hands the file to the GAN stage (its ``rotnet`` field);
runs that need no RotNet, or name their own file, skip it, and so does a resumed run whose GAN stage
began before the stage existed (it keeps the RotNet in its gan/ folder).

Under torchrun (``torchrun --nproc_per_node=N -m training.pipeline ...``) the GAN and U-Net stages run
data-parallel on every process; the features stage's RotNet, evaluation and the bundle are rank 0's alone,
and rank 0 alone reads and writes the run folder (stage markers included) and the feature cache, the others
learn the results by broadcast.

Presets: ``paper`` (the paper's settings: 128 px, FineGAN width 64, batch 32, 810 CUB epochs, U-Net
12k x 95), ``cpu`` (64 px, sized to finish on 2 CPU cores in under 2 hours, each stage also capped by
wall time) and ``tiny`` (32 px, a few dozen steps per stage: tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .checkpoint import atomic_write_text
from .config import (
    ConfigError,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LossConfig,
    PerturbConfig,
    UNetConfig,
    check_knobs,
    default_of,
    gan_config,
    knob,
    lr_drop_step,
    mask_floor,
    rampup_iters,
    register,
    to_dict,
)
from .train import distributed as ddp
from .train import feature_stage
from .train.unet_trainer import UNetTrainConfig

PRESETS = ("paper", "cpu", "tiny", "horse", "horse128")
DONE = "DONE"  # a finished stage's result (JSON) in its folder; eval's result is EVAL
EVAL = "eval.json"

# ---- cpu preset sizing -------------------------------------------------------------------------------
# The budget is 2 hours of wall time on 2 CPU cores for the whole pipeline. Speeds measured on the
# project's 2-core box with 1 torch thread while other jobs held the other core (a conservative floor):
CPU_GAN_ITERS_PER_S = 0.67  # ELGAN (config E) iterations/s at 64 px, width 12, batch 32 (21 img/s)
CPU_UNET_IMGS_PER_S = 40.0  # U-Net (base 16, depth 4, channels-last) images/s at 64 px, G sampling included
CPU_GAN_MINUTES = 90.0  # GAN stage share of the budget (also its hard wall-time cap)
CPU_UNET_MINUTES = 20.0  # U-Net stage share (also its hard cap); the rest is RotNet, FD, evaluation
CPU_UNET_BATCH = 32  # smaller than the paper's 95: more, cheaper steps fit the budget
CPU_GAN_ITERS = int(CPU_GAN_MINUTES * 60 * CPU_GAN_ITERS_PER_S * 0.9)  # 10% for FD and checkpoints
CPU_UNET_STEPS = int(CPU_UNET_MINUTES * 60 * CPU_UNET_IMGS_PER_S * 0.8 / CPU_UNET_BATCH)  # 20% for G + val

HORSE_GAN_MINUTES = 130.0  # GAN share of the horse preset's 3 CPU-hours (also its cap)
HORSE_GAN_ITERS = int(HORSE_GAN_MINUTES * 60 * CPU_GAN_ITERS_PER_S * 0.9)

# The paper: 810 epochs of CUB's 10,000 training images at batch 32, equivariance ramp-up over 400.
PAPER_GAN_ITERS = 810 * 10_000 // 32
PAPER_RAMPUP_ITERS = rampup_iters(PAPER_GAN_ITERS)


class PresetSpec(NamedTuple):
    """Every knob a preset sets; overrides replace fields by name (``--gan-iters`` -> gan_iters). Each field is
    one knob of the configs it builds (PRESET_KNOBS), whose type, meaning, default and range it takes."""

    size: int
    gan_width: int
    gan_batch: int
    gan_iters: int
    gan_minutes: float
    rotnet_iters: int
    fd_every: int
    fd_samples: int
    unet_base: int
    unet_depth: int
    unet_batch: int
    unet_steps: int
    unet_minutes: float
    val_size: int
    val_every: int
    eval_limit: int
    seed: int = default_of(GanTrainConfig, "seed")
    device: str = default_of(GanTrainConfig, "device")
    threads: int = default_of(GanTrainConfig, "threads")
    precision: str = default_of(GanTrainConfig, "precision")
    ablation: str = default_of(GanTrainConfig, "ablation")
    gan_init: str = default_of(GanTrainConfig, "init")
    diffaugment: str = default_of(GanTrainConfig, "diffaugment")
    gan_categories: int = default_of(GeneratorConfig, "n_categories")
    gan_group_size: int = default_of(GeneratorConfig, "group_size")
    gan_d_width: int | None = None  # the one "unset": gan_width (0, in configs saved before, means the same)
    disc: str = default_of(DiscriminatorConfig, "kind")
    perceptual: str = default_of(GanTrainConfig, "perceptual")
    fd_net: str = default_of(GanTrainConfig, "fd_net")
    gamma_bg: float = default_of(LossConfig, "gamma_bg")
    gamma_indep: float = default_of(LossConfig, "gamma_indep")
    mask_ceiling: float = default_of(LossConfig, "mask_ceiling")
    mask_floor: float | None = None  # the second "unset": the ablation's (A: PerturbGAN's floor at 0.25)
    max_translate: float = default_of(PerturbConfig, "max_translate")
    unet_encoder: str = default_of(UNetConfig, "encoder")
    unet_postprocess: str = default_of(UNetConfig, "postprocess")
    unet_augment: str = default_of(UNetTrainConfig, "augment")


SPECS: dict[str, PresetSpec] = {
    "paper": PresetSpec(size=128, gan_width=64, gan_batch=32, gan_iters=PAPER_GAN_ITERS, gan_minutes=0.0,
                        rotnet_iters=2000, fd_every=5000, fd_samples=5000, unet_base=64, unet_depth=4,
                        unet_batch=95, unet_steps=12_000, unet_minutes=0.0, val_size=1000, val_every=500,
                        eval_limit=0),
    "cpu": PresetSpec(size=64, gan_width=12, gan_batch=32, gan_iters=CPU_GAN_ITERS,
                      gan_minutes=CPU_GAN_MINUTES, rotnet_iters=600, fd_every=500, fd_samples=500,
                      unet_base=16, unet_depth=4,
                      unet_batch=CPU_UNET_BATCH, unet_steps=CPU_UNET_STEPS, unet_minutes=CPU_UNET_MINUTES,
                      val_size=500, val_every=250, eval_limit=0),
    "tiny": PresetSpec(size=32, gan_width=4, gan_batch=8, gan_iters=30, gan_minutes=0.0, rotnet_iters=20,
                       fd_every=15, fd_samples=64, unet_base=4, unet_depth=3, unet_batch=8, unet_steps=30,
                       unet_minutes=0.0, val_size=32, val_every=15, eval_limit=64),
    # A few hundred photos (Weizmann horses: 250) on this CPU: 64 px, <= 3 CPU-hours in all (RotNet ~4 min,
    # GAN <= 130 min, U-Net <= 20 min, evaluation ~1 min); the few-shot augmentations on D's inputs; the U-Net
    # reads the frozen ImageNet Lite0 (on the horses: IoU 0.656 against the scratch U-Net's 0.552, same pairs)
    # and sees augmented pairs (on the horses: IoU 0.783 against 0.677 for the same generator and budget).
    "horse": PresetSpec(size=64, gan_width=12, gan_batch=32, gan_iters=HORSE_GAN_ITERS, gan_minutes=HORSE_GAN_MINUTES,
                        rotnet_iters=600, fd_every=250, fd_samples=250, unet_base=16, unet_depth=4,
                        unet_batch=CPU_UNET_BATCH, unet_steps=CPU_UNET_STEPS, unet_minutes=CPU_UNET_MINUTES,
                        val_size=500, val_every=250, eval_limit=0, diffaugment="color,translation,cutout",
                        unet_encoder="lite0", unet_augment="photo"),
    # The same collection at the literature's 128 px on one GPU (the paper's width; 2,000 epochs of 250).
    "horse128": PresetSpec(size=128, gan_width=64, gan_batch=32, gan_iters=2000 * 250 // 32, gan_minutes=0.0,
                           rotnet_iters=2000, fd_every=1000, fd_samples=250, unet_base=64, unet_depth=4,
                           unet_batch=95, unet_steps=12_000, unet_minutes=0.0, val_size=1000, val_every=500,
                           eval_limit=0, diffaugment="color,translation,cutout", unet_encoder="lite0",
                           unet_augment="photo"),
}


@register
@dataclass(frozen=True)
class PipelineConfig:
    preset: str = knob("cpu", "preset the config is built from (SPECS in elgan/pipeline.py)", choices=PRESETS)
    data: str = knob("synthetic", "GAN training images: synthetic | cub:PATH | folder:PATH | lsun:PATH")
    size: int = knob(64, "working resolution of G, D and the U-Net")
    gan: GanTrainConfig = field(default_factory=GanTrainConfig)  # stage 1
    unet: UNetTrainConfig = field(default_factory=UNetTrainConfig)  # stage 2 (stream source from stage 1's G)
    eval_data: str = knob("", "data spec scored in stage 3; '' = data")
    eval_split: str = knob("test", "split of eval_data scored")
    eval_size: int = knob(128, "evaluation resolution (the literature's 128)", lo=16)
    eval_limit: int = knob(0, "score only the first N images (0 = all)", lo=0)
    eval_convention: str = knob("dataset", "dataset | per_image (see metrics.py)", choices=("dataset", "per_image"))
    half: bool = knob(False, "store fp16 weights in bundle.safetensors (half the size)")
    out: str = knob("", "run folder; '' = runs/pipeline-<preset>")
    # where, not what: the same key gives the same RotNet in any folder, so it is not a recorded override
    feature_cache: str = knob("", "folder of the RotNets that pipeline runs share (one per data, size, seed and "
                              "RotNet steps); '' = $ELGAN_FEATURE_CACHE, else feature_cache/ beside the run "
                              "folder, so runs kept in one folder (an ablation's, a screen's) train it once")
    overrides: dict[str, Any] = field(default_factory=dict)  # preset fields changed by the user (recorded)

    def __post_init__(self) -> None:
        check_knobs(self)
        if self.gan.size != self.size or self.gan.data != self.data:
            raise ConfigError("gan.size and gan.data must equal size and data")
        if self.unet.source != "stream":
            raise ConfigError("the pipeline trains its U-Net on the stream of its own GAN (source 'stream')")

    @property
    def eval_spec(self) -> str:
        return self.eval_data or self.data

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/pipeline-{self.preset}")


# Each preset field is one knob of the configs it builds: its type, help and range are that knob's.
PRESET_KNOBS: dict[str, tuple[type, str]] = {
    "size": (PipelineConfig, "size"), "gan_width": (GeneratorConfig, "width"), "gan_batch": (GanTrainConfig, "batch"),
    "gan_iters": (GanTrainConfig, "iters"), "gan_minutes": (GanTrainConfig, "max_minutes"),
    "rotnet_iters": (GanTrainConfig, "rotnet_iters"), "fd_every": (GanTrainConfig, "fd_every"),
    "fd_samples": (GanTrainConfig, "fd_samples"), "unet_base": (UNetConfig, "base"),
    "unet_depth": (UNetConfig, "depth"), "unet_batch": (UNetTrainConfig, "batch"),
    "unet_steps": (UNetTrainConfig, "steps"),
    "unet_minutes": (UNetTrainConfig, "max_minutes"), "val_size": (UNetTrainConfig, "val_size"),
    "val_every": (UNetTrainConfig, "val_every"), "eval_limit": (PipelineConfig, "eval_limit"),
    "seed": (GanTrainConfig, "seed"), "device": (GanTrainConfig, "device"), "threads": (GanTrainConfig, "threads"),
    "precision": (GanTrainConfig, "precision"), "ablation": (GanTrainConfig, "ablation"),
    "gan_init": (GanTrainConfig, "init"), "diffaugment": (GanTrainConfig, "diffaugment"),
    "gan_categories": (GeneratorConfig, "n_categories"), "gan_group_size": (GeneratorConfig, "group_size"),
    "gan_d_width": (DiscriminatorConfig, "width"), "disc": (DiscriminatorConfig, "kind"),
    "perceptual": (GanTrainConfig, "perceptual"), "fd_net": (GanTrainConfig, "fd_net"),
    "gamma_bg": (LossConfig, "gamma_bg"), "gamma_indep": (LossConfig, "gamma_indep"),
    "mask_ceiling": (LossConfig, "mask_ceiling"), "mask_floor": (LossConfig, "mask_size_eta"),
    "max_translate": (PerturbConfig, "max_translate"), "unet_encoder": (UNetConfig, "encoder"),
    "unet_postprocess": (UNetConfig, "postprocess"), "unet_augment": (UNetTrainConfig, "augment"),
}


def pipeline_config(preset: str = "cpu", data: str = "synthetic", **overrides: Any) -> PipelineConfig:
    """A consistent PipelineConfig from a preset; overrides name PresetSpec fields or PipelineConfig's
    eval_data, eval_split, eval_size, eval_convention, half, out, feature_cache."""
    if preset not in SPECS:
        raise ConfigError(f"preset must be one of {PRESETS}, got {preset!r}")
    top_keys = {"eval_data", "eval_split", "eval_size", "eval_convention", "half", "out", "feature_cache"}
    top = {k: overrides.pop(k) for k in list(overrides) if k in top_keys}
    unknown = set(overrides) - set(PresetSpec._fields)
    if unknown:
        raise ConfigError(f"unknown pipeline override(s) {sorted(unknown)}; known: "
                          f"{sorted(set(PresetSpec._fields) | top_keys)}")
    if preset.startswith("horse") and data == "synthetic":
        raise ConfigError(f"preset {preset!r} is sized for a folder of a few hundred photos: give it "
                          "--data folder:PATH (e.g. folder:../shared/data/weizmann_horse)")
    s = SPECS[preset]._replace(**overrides)
    common = {"seed": s.seed, "device": s.device, "threads": s.threads, "precision": s.precision}
    every = max(1, min(500, s.gan_iters // 10))
    gan = gan_config(s.size, s.ablation, s.gan_width, s.gan_d_width or None, categories=s.gan_categories,
                     group_size=s.gan_group_size, disc=s.disc, perceptual=s.perceptual, fd_net=s.fd_net,
                     data=data, batch=s.gan_batch, iters=s.gan_iters,
                     rotnet_iters=s.rotnet_iters, fd_every=min(s.fd_every, s.gan_iters),
                     fd_samples=s.fd_samples, max_minutes=s.gan_minutes, log_every=min(25, every),
                     sample_every=every, ckpt_every=every,
                     # t_1: config.rampup_iters (400 of the paper's 810 epochs), resolved by GanTrainConfig
                     init=s.gan_init, diffaugment=s.diffaugment,
                     loss_overrides={"gamma_bg": s.gamma_bg, "gamma_indep": s.gamma_indep,
                                     "mask_ceiling": s.mask_ceiling, **mask_floor(s.mask_floor)},
                     perturb_overrides={"max_translate": s.max_translate},
                     **common)
    unet = UNetTrainConfig(source="stream", size=s.size,
                           unet=UNetConfig(base=s.unet_base, depth=s.unet_depth, encoder=s.unet_encoder,
                                           postprocess=s.unet_postprocess),
                           steps=s.unet_steps, batch=s.unet_batch, augment=s.unet_augment,
                           lr_drop_step=lr_drop_step(s.unet_steps),
                           val_size=s.val_size, val_every=min(s.val_every, s.unet_steps),
                           log_every=min(25, max(1, s.unet_steps // 10)),
                           ckpt_every=min(500, max(1, s.unet_steps // 10)), max_minutes=s.unet_minutes,
                           **common)
    recorded = {**overrides, **{k: v for k, v in top.items() if k not in ("out", "feature_cache")}}
    if data != "synthetic":
        recorded["data"] = data
    return PipelineConfig(preset=preset, data=data, size=s.size, gan=gan, unet=unet, eval_limit=s.eval_limit,
                          overrides=recorded, **top)


class PipelineResult(NamedTuple):
    bundle: Path  # bundle.safetensors
    metrics: dict[str, Any] | None  # eval scores, or None when eval_data has no masks
    wall_s: dict[str, float]  # seconds per stage (as first measured, also when skipped on resume)


def _stage_gan(cfg: PipelineConfig, root: Path, features: dict[str, Any], progress: bool) -> dict[str, Any]:
    from .train.gan_trainer import train_gan

    folder = root / "gan"
    t = time.perf_counter()
    resume = ddp.on_main(lambda: (folder / "state.safetensors").exists())
    r = train_gan(feature_stage.gan_config(cfg.gan, features), folder, resume=resume, progress=progress)
    return {"best_checkpoint": str(r.best_checkpoint), "steps": r.steps, "best_fd": r.best_fd,
            "completed": r.completed, "wall_s": time.perf_counter() - t}


def _stage_unet(cfg: PipelineConfig, root: Path, gan_best: str, progress: bool) -> dict[str, Any]:
    from .bundle import load_model_bundle
    from .train.unet_trainer import train_unet

    folder = root / "unet"
    t = time.perf_counter()
    generator = ddp.on_main(lambda: load_model_bundle(gan_best, "cpu").generator)  # moved by train_unet
    resume = ddp.on_main(lambda: (folder / "state.safetensors").exists())
    r = train_unet(cfg.unet, folder, generator, resume=resume, progress=progress)
    return {"best_checkpoint": str(r.best_checkpoint), "steps": r.steps, "best_val_iou": r.best_val_iou,
            "finished": r.finished, "imgs_per_s": r.imgs_per_s, "wall_s": time.perf_counter() - t}


def _stage_eval(cfg: PipelineConfig, unet_best: str, progress: bool) -> dict[str, Any]:
    from .bundle import load_unet
    from .data import DataError
    from .evaluate import PROTOCOL, evaluate_unet_detailed
    from .train.unet_trainer import resolve_device

    t = time.perf_counter()
    unet = load_unet(unet_best, resolve_device(cfg.unet.device))
    record: dict[str, Any] = {"data": cfg.eval_spec, "split": cfg.eval_split, "size": cfg.eval_size,
                              "unet_size": unet.input_size, "protocol": PROTOCOL}
    try:
        ev = evaluate_unet_detailed(unet, cfg.eval_spec, cfg.eval_split, cfg.eval_size, cfg.eval_convention,
                                    limit=cfg.eval_limit or None, progress=progress)
        record["scores"] = ev.scores.as_dict()
    except DataError as exc:  # e.g. a folder of photos without masks: nothing to score against
        record["scores"], record["skipped"] = None, str(exc)
    record["wall_s"] = time.perf_counter() - t
    return record


def run_pipeline(cfg: PipelineConfig, out_dir: str | Path | None = None, resume: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print) -> PipelineResult:
    """RotNet -> GAN -> U-Net on its pairs -> evaluation -> bundle.safetensors; `resume` skips finished
    stages. Under torchrun every process calls this: GAN and U-Net are distributed, the rest is rank 0's."""
    ddp.setup(cfg.gan.device)
    root = Path(out_dir) if out_dir is not None else cfg.run_dir
    main = ddp.is_main()
    progress = progress and main

    def prepare() -> None:
        saved = root / "config.json"
        if saved.exists() and not resume:
            raise FileExistsError(f"{root} already holds a pipeline run; resume it (--resume) or choose "
                                  "another folder")
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(to_dict(cfg), indent=2, sort_keys=True))

    ddp.on_main(prepare)
    stages: dict[str, dict[str, Any]] = {}
    for name, marker in (("features", root / "features" / DONE), ("gan", root / "gan" / DONE),
                         ("unet", root / "unet" / DONE), ("eval", root / EVAL)):
        done = earlier = ddp.on_main(lambda m=marker: json.loads(m.read_text()) if resume and m.exists() else None)
        if name == "features" and done is not None:  # the GAN stage to come needs its file intact
            done = ddp.on_main(lambda d=done: d if feature_stage.still_usable(d, root) else None)
        if done is not None:
            stages[name] = done
        else:
            if name == "features":  # rank 0 trains or finds the RotNet; the others get its record
                stages[name] = ddp.on_main(lambda e=earlier: feature_stage.run_stage(
                    cfg.gan, root, cfg.feature_cache, e, progress, log))
            elif name == "gan":
                stages[name] = _stage_gan(cfg, root, stages["features"], progress)
            elif name == "unet":
                stages[name] = _stage_unet(cfg, root, stages["gan"]["best_checkpoint"], progress)
            else:  # one process scores the test split; the others get its record
                stages[name] = ddp.on_main(lambda: _stage_eval(cfg, stages["unet"]["best_checkpoint"], progress))

            def write(m: Path = marker, record: dict[str, Any] = stages[name]) -> None:
                m.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(m, json.dumps(record, indent=2, sort_keys=True, default=str))

            ddp.on_main(write)
        if main:
            log(f"[{name}] {'(done earlier) ' if done is not None else ''}{_summary(name, stages[name])}")

    wall = {name: float(s["wall_s"]) for name, s in stages.items()}
    wall["bundle"] = ddp.on_main(lambda: _write_bundle(cfg, root, stages, wall))
    if main:
        per_stage = ", ".join(f"{k} {v:.0f} s" for k, v in wall.items())
        log(f"wall time: {per_stage}; total {sum(wall.values()):.0f} s")
        log(f"bundle: {root / 'bundle.safetensors'}")
    return PipelineResult(root / "bundle.safetensors", stages["eval"]["scores"], wall)


def _write_bundle(cfg: PipelineConfig, root: Path, stages: dict[str, dict[str, Any]],
                  wall: dict[str, float]) -> float:
    """Rank 0: generator, phi, U-Net and D of the best checkpoints + metrics -> bundle.safetensors."""
    from .bundle import load_model_bundle, load_unet, save_model_bundle

    t = time.perf_counter()
    gan = load_model_bundle(stages["gan"]["best_checkpoint"])
    unet = load_unet(stages["unet"]["best_checkpoint"])
    metrics = stages["eval"]["scores"]
    meta = {"preset": cfg.preset, "data": cfg.data, "overrides": cfg.overrides, "pipeline": to_dict(cfg),
            "metrics": None if metrics is None else {**metrics, **{k: stages["eval"][k] for k in
                                                                   ("data", "split", "size", "protocol")}},
            "features": {k: v for k, v in stages["features"].items() if k in ("status", "reason", "key", "path")},
            "gan": {k: stages["gan"][k] for k in ("steps", "best_fd", "completed")},
            "unet": {k: stages["unet"][k] for k in ("steps", "best_val_iou", "finished", "imgs_per_s")}}
    save_model_bundle(root / "bundle.safetensors", gan.generator, gan.phi, gan.perturb, unet, gan.discriminator,
                      {**meta, "wall_s": {**wall, "bundle": time.perf_counter() - t}}, half=cfg.half)
    return time.perf_counter() - t


def _summary(name: str, s: dict[str, Any]) -> str:
    if name == "features":
        return feature_stage.summary(s)
    if name == "gan":
        state = "done" if s["completed"] else "stopped by its time cap"
        return f"{s['steps']} iterations ({state}), best FD {s['best_fd']}, {s['wall_s']:.0f} s"
    if name == "unet":
        state = "done" if s["finished"] else "stopped by its time cap"
        iou = "-" if s["best_val_iou"] is None else f"{s['best_val_iou']:.3f}"
        return f"{s['steps']} steps ({state}), best synthetic-val IoU {iou}, {s['wall_s']:.0f} s"
    if s["scores"] is None:
        return f"skipped: {s.get('skipped')}"
    sc = s["scores"]
    return (f"{s['data']} [{s['split']}] n={sc['n']} ({sc['convention']}): ACC {100 * sc['acc']:.1f} "
            f"IoU {100 * sc['iou']:.1f} mIoU {100 * sc['miou']:.1f}, {s['wall_s']:.0f} s")
