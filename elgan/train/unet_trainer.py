"""Section 3.4: train the segmentation network F_theta on pseudo-segmentation pairs (x_i, pi_i) from G.

Training follows the paper (appendix A, "exactly the same as" Voynov et al.): Adam, lr 1e-3, batch 95,
12,000 steps, lr x 0.2 from step 8,000; the loss is eq. (10), a BCE against the *soft* mask pi.
Checkpoint selection follows ILSGAN (the same group's later code): hold out synthetic pairs and keep
the U-Net with the best IoU on them -- never on real test masks, which an unsupervised method may not see.

Sources of pairs:
* ``stream``       fresh (z, c) every step straight from G: an endless dataset, nothing on disk (default);
                   the val set is a fixed draw of ``val_size`` pairs under a separate seed.
* ``folder:PATH``  pairs written by ``write_synthetic_dataset``; ``val_fraction`` of them held out.
* ``real:SPEC``    a dataset's train split with its *true* masks: the supervised upper bound of Table 1.

Run folder: ``last.safetensors`` (bundle: "unet" + configs), ``best.safetensors`` (best val IoU),
``state.safetensors`` (weights, optimiser, step, RNG: everything resume needs), ``log.jsonl``.

Under torchrun (elgan.train.distributed): DDP on the U-Net (SyncBatchNorm, so a step does not depend on the
number of ranks), the global batch split over the ranks, each rank drawing its own pairs; rank 0 alone
validates and writes. Mixed precision: autocast around F_theta, the BCE in fp32, a GradScaler for fp16.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointError, load_bundle, load_state, save_bundle, save_state
from ..config import ConfigError, RunControl, UNetConfig, check_knobs, knob, register, to_dict
from ..data.augment import augment_pairs
from ..metrics import ScoreAccumulator
from ..nets.generator import LayeredGenerator
from ..nets.unet import Segmenter, build_unet
from ..synthesis import PairFolder, Pairs, derived_seed, sample_pairs, synthesize
from . import distributed as ddp
from .precision import Precision
from .runlog import append_record
from .trainloop import CONFIG, LOG, STATE, TrainLoop, claim_run, load_rank_state, rank_state, rewind_log, write_config

LAST, BEST = "last.safetensors", "best.safetensors"
TRAIN_STREAM, VAL_STREAM, SPLIT_STREAM = 0, 1, 2  # derived_seed streams of one run seed
# NHWC activations: oneDNN's convolutions run ~1.5x faster on CPU (measured: 44 -> 66 img/s, 64 px, base 16)
CHANNELS_LAST = torch.channels_last


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@register
@dataclass(frozen=True)
class UNetTrainConfig(RunControl):
    source: str = knob("stream", "stream (fresh pairs from G) | folder:PATH (written pairs) | real:SPEC (true masks)")
    gan: str = knob("", "GAN checkpoint or bundle whose generator streams the pairs ('' = passed in by the caller)")
    size: int = knob(64, "working resolution of the U-Net; pairs are resized to it")
    unet: UNetConfig = field(default_factory=UNetConfig)  # architecture of F_theta
    steps: int = knob(12000, "optimisation steps (the paper's 12,000)", lo=1, hi=10_000_000)
    batch: int = knob(95, "pairs per step (paper)", lo=1)
    lr: float = knob(1e-3, "Adam learning rate (paper)", gt=0, lt=1)
    lr_drop_step: int = knob(8000, "from this step on the learning rate is lr * lr_drop_factor (paper: 8,000 of "
                             "12,000; config.lr_drop_step)", lo=0)
    lr_drop_factor: float = knob(0.2, "the learning rate's factor from lr_drop_step on (paper)", gt=0, hi=1)
    seed: int = knob(0, "seeds the weight init, the training draws and the held-out draw", lo=0)
    augment: str = knob("none", "training pairs as drawn | photo: each picture and its mask flipped and cropped "
                        "together (scale 0.5-1), the picture's colours jittered (elgan.data.augment.augment_pairs); "
                        "validation pairs are never augmented", choices=("none", "photo"))
    val_fraction: float = knob(0.1, "folder / real sources: share held out for checkpoint selection (ILSGAN: 90/10)",
                               gt=0, lt=1)
    val_size: int = knob(500, "stream source: number of held-out pairs, drawn once with a separate seed", lo=1)
    val_every: int = knob(500, "steps between val IoU measurements; the best goes to best.safetensors", lo=1)
    log_every: int = knob(25, "steps between JSON log lines", lo=1)
    ckpt_every: int = knob(500, "steps between (atomic) checkpoints", lo=1)

    def __post_init__(self) -> None:
        check_knobs(self)
        kind = self.source_kind
        _check(kind in ("stream", "folder", "real"),
               f"source must be stream, folder:PATH or real:SPEC, got {self.source!r}")
        _check(kind == "stream" or bool(self.source_arg), f"source {self.source!r} names no path / data spec")
        _check(self.size >= 8 and self.size % self.unet.multiple == 0,
               f"size must be a multiple of {self.unet.multiple} (the U-Net's total stride), got {self.size}")

    @property
    def source_kind(self) -> str:
        return self.source.partition(":")[0]

    @property
    def source_arg(self) -> str:
        return self.source.partition(":")[2].strip()


class UNetRunResult(NamedTuple):
    best_checkpoint: Path  # bundle with the best synthetic-val IoU
    last_checkpoint: Path  # bundle at the last step
    steps: int  # steps done (== cfg.steps unless stopped by max_minutes)
    best_val_iou: float | None  # foreground IoU on the held-out pairs of best_checkpoint
    finished: bool  # all cfg.steps done
    imgs_per_s: float  # training throughput of this call (0 when nothing was trained)


def segmentation_loss(logits: torch.Tensor, soft_masks: torch.Tensor) -> torch.Tensor:
    """Eq. (10): BCE of F_theta(x) against the soft mask pi (on logits, for numerical stability)."""
    return F.binary_cross_entropy_with_logits(logits, soft_masks)


def lr_at(cfg: UNetTrainConfig, step: int) -> float:
    """The step schedule of the paper: lr, then lr * factor from lr_drop_step on."""
    return cfg.lr * (cfg.lr_drop_factor if step >= cfg.lr_drop_step else 1.0)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def resize_pairs(pairs: Pairs, size: int) -> Pairs:
    """Bring pairs to size x size (bilinear, antialiased when shrinking; the mask stays soft)."""
    if pairs.images.shape[-2:] == (size, size):
        return pairs
    kw = {"size": (size, size), "mode": "bilinear", "align_corners": False, "antialias": True}
    return Pairs(F.interpolate(pairs.images, **kw).clamp(-1, 1), F.interpolate(pairs.masks, **kw).clamp(0, 1))


class PairSource(Protocol):
    def draw(self, n: int, rng: torch.Generator) -> Pairs: ...


class StreamSource:
    """Fresh pairs from G for every batch."""

    def __init__(self, generator: LayeredGenerator, size: int) -> None:
        self.generator, self.size = generator, size

    def draw(self, n: int, rng: torch.Generator) -> Pairs:
        z, c = self.generator.sample_codes(n, rng)
        return resize_pairs(sample_pairs(self.generator, z, c), self.size)


class FolderSource:
    """Random pairs (with replacement) among `indices` of a folder of written pairs."""

    def __init__(self, folder: PairFolder, indices: torch.Tensor, size: int) -> None:
        self.folder, self.indices, self.size = folder, indices, size

    def draw(self, n: int, rng: torch.Generator) -> Pairs:
        pick = self.indices[torch.randint(len(self.indices), (n,), generator=rng)]
        return resize_pairs(self.folder.load(pick), self.size)


class TensorSource:
    """Random pairs (with replacement) from uint8 images [N, 3, H, W] and masks [N, 1, H, W] in {0, 1}."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, size: int) -> None:
        self.images, self.masks, self.size = images, masks, size

    def draw(self, n: int, rng: torch.Generator) -> Pairs:
        pick = torch.randint(len(self.images), (n,), generator=rng)
        return self.take(pick)

    def take(self, pick: torch.Tensor) -> Pairs:
        return resize_pairs(Pairs(self.images[pick].float() / 127.5 - 1, self.masks[pick].float()), self.size)


def _split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation cut into (train, val) indices; both non-empty."""
    if n < 2:
        raise ConfigError(f"need at least 2 pairs to hold some out for validation, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, SPLIT_STREAM)))
    n_val = min(n - 1, max(1, round(n * fraction)))
    return perm[n_val:], perm[:n_val]


def build_sources(cfg: UNetTrainConfig, generator: LayeredGenerator | None,
                  device: torch.device) -> tuple[PairSource, Pairs]:
    """(training source, held-out val pairs on the CPU) for cfg.source."""
    kind, arg = cfg.source_kind, cfg.source_arg
    if kind == "stream":
        if generator is None:
            if not cfg.gan:
                raise ConfigError("the stream source needs a generator: pass one, or set gan to a checkpoint")
            from ..bundle import load_model_bundle  # lazy: only the stream-from-file case needs it

            # read by rank 0 and broadcast: the file need only exist where rank 0 runs
            generator = ddp.on_main(lambda: load_model_bundle(cfg.gan, "cpu").generator)
        generator.to(device)
        val_rng = torch.Generator().manual_seed(derived_seed(cfg.seed, VAL_STREAM))
        val = [resize_pairs(p, cfg.size) for p in synthesize(generator, cfg.val_size, 100, val_rng)]
        return StreamSource(generator, cfg.size), Pairs(torch.cat([p.images for p in val]).cpu(),
                                                        torch.cat([p.masks for p in val]).cpu())
    if kind == "folder":
        folder = PairFolder(arg)
        train_idx, val_idx = _split(len(folder), cfg.val_fraction, cfg.seed)
        return FolderSource(folder, train_idx, cfg.size), resize_pairs(folder.load(val_idx), cfg.size)
    from ..data import load_dataset  # lazy: the real loaders are only needed for the upper bound

    data = load_dataset(arg, "train", cfg.size, with_masks=True)
    assert data.masks is not None
    train_idx, val_idx = _split(len(data), cfg.val_fraction, cfg.seed)
    source = TensorSource(data.images, data.masks, cfg.size)
    return TensorSource(data.images[train_idx], data.masks[train_idx], cfg.size), source.take(val_idx)


@torch.no_grad()
def validate(unet: Segmenter, val: Pairs, device: torch.device, batch: int = 100) -> float:
    """Dataset-level foreground IoU of F_theta(x) > 0.5 against pi > 0.5 on held-out pairs."""
    was_training = unet.training
    unet.eval()
    acc = ScoreAccumulator()
    for i in range(0, len(val.images), batch):
        acc.update(unet.predict(val.images[i:i + batch].to(device)), val.masks[i:i + batch])
    unet.train(was_training)
    return acc.result("dataset").iou


# Settings a resumed run may change: its length, budget, placement and bookkeeping cadence.
RESUME_MAY_CHANGE = ("steps", "max_minutes", "device", "threads", "log_every", "val_every", "ckpt_every",
                     "gan", "precision")


def _check_resumable(saved: dict, cfg: UNetTrainConfig) -> None:
    now = to_dict(cfg)
    diff = sorted(k for k in set(saved) | set(now)
                  if k not in RESUME_MAY_CHANGE and saved.get(k) != now.get(k))
    if diff:
        raise ConfigError(f"cannot resume with a different config: {', '.join(diff)} changed")


def _save_checkpoint(run_dir: Path, name: str, unet: Segmenter, cfg: UNetTrainConfig, meta: dict) -> None:
    save_bundle(run_dir / name, {"unet": unet}, {"unet": cfg.unet, "unet_train": cfg},
                {**meta, "unet_size": cfg.size})


def train_unet(cfg: UNetTrainConfig, run_dir: str | Path, generator: LayeredGenerator | None = None,
               resume: bool = False, progress: bool = True) -> UNetRunResult:
    """Train F_theta on cfg.source; resumable from run_dir/state.safetensors. Moves `generator` to the
    training device (the stream source samples it there). Under torchrun every process calls this."""
    ddp.setup(cfg.device)
    run_dir = Path(run_dir)

    def prepare() -> None:  # rank 0's file system decides; a refusal stops every rank (ddp.on_main)
        claim_run(run_dir, resume, "a U-Net run")
        if resume and (run_dir / CONFIG).exists():
            _check_resumable(json.loads((run_dir / CONFIG).read_text()), cfg)
        write_config(run_dir, cfg)

    ddp.on_main(prepare)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, run_dir, generator, resume, progress and ddp.is_main())
    finally:
        torch.set_num_threads(threads)  # the caller's setting, e.g. the app's, is left as it was


def _train(cfg: UNetTrainConfig, run_dir: Path, generator: LayeredGenerator | None, resume: bool,
           progress: bool) -> UNetRunResult:
    state_path, main = run_dir / STATE, ddp.is_main()
    device = ddp.device(cfg.device)  # cuda:LOCAL_RANK under torchrun
    batch = ddp.local_batch(cfg.batch, "U-Net batch")  # cfg.batch is global: this rank's share
    precision = Precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with torch.random.fork_rng(devices=[]):  # a seeded init without touching the caller's global RNG
        torch.manual_seed(cfg.seed)
        unet = build_unet(cfg.unet, input_size=cfg.size)
    unet = ddp.sync_batchnorm(unet.to(device, memory_format=CHANNELS_LAST).train())
    opt = torch.optim.Adam(unet.parameters(), lr=cfg.lr)
    scaler = precision.grad_scaler()  # fp16 only; a pass-through otherwise
    rng = torch.Generator().manual_seed(ddp.rank_seed(derived_seed(cfg.seed, TRAIN_STREAM)))  # this rank's draws
    step, best_iou, best_step = 0, None, None
    if resume:
        state, best_meta = ddp.on_main(lambda: (load_state(state_path), load_bundle(run_dir / BEST).metadata
                                                if (run_dir / BEST).exists() else None))
        try:
            unet.load_state_dict(state["unet"])
            opt.load_state_dict(state["optimizer"])
            load_rank_state(state, rng, "data_rng", scaler=scaler)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{state_path}: does not match this U-Net config: {exc}") from exc
        step, best_iou, best_step = int(state["step"]), state["best_val_iou"], state["best_step"]
        if best_meta is not None:  # a best written after the last state save still counts
            if best_iou is None or best_meta.get("val_iou", -1.0) > best_iou:
                best_iou, best_step = best_meta.get("val_iou"), best_meta.get("step")
        rewind_log(run_dir, step)
    if step >= cfg.steps and ddp.on_main(lambda: (run_dir / BEST).exists()):
        return UNetRunResult(run_dir / BEST, run_dir / LAST, step, best_iou, True, 0.0)

    source, val = build_sources(cfg, generator, device)
    model = ddp.wrap(unet)  # training forwards; `unet` itself for validation and saving (rank 0, no sync)
    loop = TrainLoop(cfg.steps, step, cfg.batch, cfg.max_minutes, "U-Net", progress, unit="step")
    win_loss, win_n = torch.zeros((), device=device), 0
    while step < cfg.steps:
        lr = lr_at(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        pairs = source.draw(batch, rng)
        x = pairs.images.to(device, non_blocking=True, memory_format=CHANNELS_LAST)  # [B, 3, S, S] in [-1, 1]
        y = pairs.masks.to(device, non_blocking=True)  # [B, 1, S, S] soft pi
        if cfg.augment == "photo":
            x, y = augment_pairs(x, y, rng)
            x = x.contiguous(memory_format=CHANNELS_LAST)
        with precision.autocast():
            logits = model(x)
        loss = segmentation_loss(logits.float(), y)  # the BCE in fp32
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        win_loss += loss.detach()
        win_n += 1
        loop.bar.update(1)
        # every rank takes the same decisions (a collective follows each): they depend on the step and on
        # the all-reduced time cap, never on what rank 0 alone measured
        out_of_time = loop.out_of_time()
        val_step = loop.due(step, cfg.val_every) or out_of_time
        val_iou = validate(unet, val, device) if val_step and main else None
        if val_iou is not None and (best_iou is None or val_iou > best_iou):
            best_iou, best_step = val_iou, step
            _save_checkpoint(run_dir, BEST, unet, cfg, {"step": step, "val_iou": val_iou})
        if step % cfg.log_every == 0 or val_step:
            loss_mean = ddp.mean_scalars({"loss": float(win_loss) / win_n})["loss"]
            elapsed, ips = loop.lap(step)
            record = {"step": step, "loss": loss_mean, "lr": lr, "imgs_per_s": ips, "elapsed_s": elapsed}
            if val_iou is not None:
                record["val_iou"] = val_iou
            if main:
                append_record(run_dir / LOG, record)
            loop.bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{ips:.0f}",
                                 best_iou="-" if best_iou is None else f"{best_iou:.3f}")
            win_loss, win_n = torch.zeros((), device=device), 0
        if loop.due(step, cfg.ckpt_every) or out_of_time:
            ranks = rank_state(rng, "data_rng", scaler=scaler)  # every rank's stream: exact resume for the same N
            if main:
                save_state(state_path, {"unet": unet.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                        **ranks, "best_val_iou": best_iou, "best_step": best_step})
                _save_checkpoint(run_dir, LAST, unet, cfg, {"step": step, "val_iou": val_iou,
                                                            "best_val_iou": best_iou, "best_step": best_step})
            ddp.barrier()
        if out_of_time:
            break
    loop.close()

    def final_best() -> tuple[float | None, int | None]:
        if not (run_dir / BEST).exists():  # e.g. resumed a run that had reached its steps before any best
            iou = validate(unet, val, device)
            _save_checkpoint(run_dir, BEST, unet, cfg, {"step": step, "val_iou": iou})
            return iou, step
        return best_iou, best_step

    best_iou, best_step = ddp.on_main(final_best)  # rank 0's bookkeeping is the run's
    return UNetRunResult(run_dir / BEST, run_dir / LAST, step, best_iou, loop.finished(step), loop.images_per_s(step))
