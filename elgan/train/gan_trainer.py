"""The ELGAN training loop: explicit D and G phases, complete resume, JSON-lines logs, FD model selection.

Run folder layout (all writes atomic):
  config.json          the resolved GanTrainConfig
  log.jsonl            one JSON object per logged step (every loss term, mask statistics, images/s)
  samples/NNNNNNN.png  rows background | foreground | mask | image for fixed codes
  rotnet.safetensors   the perceptual network (trained first, self-supervised, unless supplied)
  state.safetensors    everything resume needs: networks, optimisers, step, RNG states, best FD
  last.safetensors     model bundle of the latest step; best.safetensors: lowest FD (FD-Lite0, FD-RotNet or FID) so far

Under torchrun the same loop runs data-parallel (elgan.train.distributed): the batch is global and split over
the ranks, G's BatchNorm is synchronised (a step does not depend on the number of ranks), every rank
draws its own real images and codes, and rank 0 alone evaluates and writes the run folder. The state
holds plain (unwrapped) state dicts and the data/code RNG state of every rank, so a run resumes under
another number of processes too; the resume is bit-exact for the same number (see
distributed.rank_generator_state).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint as ckpt
from ..config import GanTrainConfig, from_dict, to_dict
from ..data import load_dataset, parse_spec
from ..data.augment import diff_augment, random_hflip, random_resized_crop
from ..fid import embed_batches, fd_between
from ..gan_loss import PHASES, ElganLoss
from ..nets.discriminator import build_discriminator
from ..nets.generator import LayeredGenerator
from ..nets.phi import LatentTransform
from ..nets.recovery import SuperCategoryRecovery
from ..nets.rotnet import RotNet
from ..visualize import grid, layer_rows, save_png
from . import distributed as ddp
from .instruments import background_minus_composite, build_instruments, fd_name, health_warning
from .precision import Precision
from .runlog import append_record
from .trainloop import LOG, STATE, TrainLoop, claim_run, due, load_rank_state, rank_state, rewind_log, write_config

NETWORKS = ("generator", "discriminator", "super_recovery", "phi")
STREAM_REFERENCE = 5000  # streamed data: images held in memory for the RotNet and the FD reference


@dataclass
class GanRunResult:
    best_checkpoint: Path  # lowest-FD bundle (the model the paper would use)
    last_checkpoint: Path  # bundle of the last step
    steps: int  # iterations completed
    best_fd: float | None  # FD-RotNet (or FID with --inception) of the best checkpoint
    completed: bool  # False when stopped early by max_minutes


class GanTrainer:
    def __init__(self, cfg: GanTrainConfig, run_dir: str | Path, progress: bool = True) -> None:
        ddp.setup(cfg.device)
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.progress = progress and ddp.is_main()
        self.device = ddp.device(cfg.device)  # cuda:LOCAL_RANK under torchrun
        self.local_batch = ddp.local_batch(cfg.batch)  # cfg.batch is global: this rank's share
        self.precision = Precision(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN's fastest kernels, chosen once
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP checks and broadcasts)
        self.rng = torch.Generator().manual_seed(ddp.rank_seed(cfg.seed))  # every draw of the run comes from here
        # SyncBatchNorm (several ranks only): G's batch statistics over the global batch, as in one process
        self.G = ddp.sync_batchnorm(LayeredGenerator(cfg.generator).to(self.device))
        self.D = build_discriminator(cfg.discriminator).to(self.device)  # the paper's or the projected D
        self.E_pi = SuperCategoryRecovery(cfg.discriminator).to(self.device)
        self.phi = LatentTransform(cfg.phi).to(self.device)
        for net in (self.G, self.D, self.E_pi):
            self._to_fast_layout(net)
        self.precision.fp32_parametrizations(self.D, self.E_pi)  # spectral norm in fp32 under autocast
        betas = (cfg.beta1, cfg.beta2)
        # one Adam per phase, holding exactly the trainable parameters of the networks PHASES names
        self.opt_d = torch.optim.Adam(self.phase_parameters("D"), lr=cfg.lr, betas=betas)
        self.opt_g = torch.optim.Adam(self.phase_parameters("G"), lr=cfg.lr, betas=betas)
        self.scaler_d, self.scaler_g = self.precision.grad_scaler(), self.precision.grad_scaler()  # fp16 only
        self.step = 0
        self.best_fd: float | None = None
        limit = cfg.data_limit or (STREAM_REFERENCE if cfg.stream else None)
        self.real = load_dataset(cfg.data, "train", cfg.size, with_masks=False, seed=cfg.seed,
                                 limit=limit, progress=self.progress).images  # uint8 [N, 3, H, W], CPU
        self._stream: Iterator[torch.Tensor] | None = None
        # frozen instruments: eq. (8)'s perceptual net (None outside config E) and the FD embedding
        self.feature_net, self.fd_embed = build_instruments(cfg, self.real, self.run_dir, self.device, self.progress)
        if isinstance(self.feature_net, RotNet):
            self._to_fast_layout(self.feature_net)
        # DDP handles for the training forwards; self.G etc. stay the plain modules (eval, sampling, state).
        # find_unused_parameters only where a head really goes unused: E_x's head of D without the
        # recovery loss (ablation A); elsewhere every parameter gets a gradient in every backward.
        self.loss = ElganLoss(cfg, ddp.wrap(self.G), ddp.wrap(self.D, find_unused_parameters=not cfg.loss.recovery),
                              ddp.wrap(self.E_pi), ddp.wrap(self.phi),
                              self.precision.float_outputs(self.feature_net.pyramid) if self.feature_net else None,
                              self._diffaugment,
                              autocast=self.precision.autocast, gather=ddp.gather_batch,
                              plain_generator=self.G, plain_discriminator=self.D)
        fixed = torch.Generator().manual_seed(cfg.seed + 1)
        self.sample_codes = self.G.sample_codes(8, fixed, self.device)
        self._real_embedding: torch.Tensor | None = None

    # ---- pieces -----------------------------------------------------------------------------------

    def networks(self) -> dict[str, torch.nn.Module]:
        """The trained networks by their checkpoint names (NETWORKS)."""
        return dict(zip(NETWORKS, (self.G, self.D, self.E_pi, self.phi), strict=True))

    def phase_parameters(self, phase: str) -> list[torch.nn.Parameter]:
        """What PHASES[phase] steps: frozen weights (a projected D's random mixing) are not held."""
        nets = self.networks()
        return [p for name in PHASES[phase].steps for p in nets[name].parameters() if p.requires_grad]

    def _to_fast_layout(self, net: torch.nn.Module) -> None:
        """NHWC (channels_last) weights on CPU: oneDNN's convolutions at these small widths run the whole
        iteration ~20 % faster than in NCHW (benchmarks/bench_train_step.py --layout, README Performance).
        Values are the same up to float rounding; checkpoints are written contiguous either way. GPUs keep
        PyTorch's default (not measured there), and so do several CPU ranks: NHWC BatchNorm rounds
        differently with the local batch size, enough for Adam to flip near-zero updates, and the
        equivalence of N ranks with one process is tested to 1e-5 in NCHW."""
        if self.device.type == "cpu" and ddp.world_size() == 1:
            net.to(memory_format=torch.channels_last)

    def _diffaugment(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return diff_augment(x, self.cfg.diffaugment, rng) if self.cfg.diffaugment else x

    def real_batch(self) -> torch.Tensor:
        """This rank's share of real images, augmented. In memory: a random index with replacement from
        this rank's own RNG -- ranks draw independently, which is what one process drawing the global
        batch does, so no DistributedSampler is needed. Streamed (LSUN LMDB): DataLoader workers and a
        DistributedSampler that gives each rank a disjoint part of every epoch."""
        if self.cfg.stream:
            batch = next(self._real_stream())
        else:
            batch = self.real[torch.randint(0, self.real.shape[0], (self.local_batch,), generator=self.rng)]
        x = batch.to(self.device, non_blocking=True).float() / 127.5 - 1  # [B, 3, H, W]
        if self.cfg.hflip:
            x = random_hflip(x, self.rng)
        if self.cfg.rrc:
            x = random_resized_crop(x, (self.cfg.rrc_scale, 1.0), generator=self.rng)
        return x

    def _real_stream(self) -> Iterator[torch.Tensor]:
        if self._stream is None:
            from ..data.lsun import LmdbImages, lsun_batches

            images = LmdbImages(parse_spec(self.cfg.data)[1], self.cfg.size, limit=self.cfg.data_limit or None)
            epoch = self.step * self.cfg.batch // len(images)  # a resumed run starts the epoch it was in
            self._stream = lsun_batches(images, self.local_batch, rank=ddp.rank(), world_size=ddp.world_size(),
                                        seed=self.cfg.seed, workers=self.cfg.data_workers,
                                        cuda=self.device.type == "cuda", start_epoch=epoch)
        return self._stream

    # ---- one iteration ----------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor | None = None,
                   codes: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                   health: bool = False) -> dict[str, float]:
        """One D phase then one G phase on a shared generator pass; returns this rank's logged terms
        (fit averages them over the ranks). `real` (float, [-1, 1]) and `codes` (z, c, eps) replace
        this rank's draws: tests feed one process and the ranks of a distributed run the same batch.
        `health` adds D's score of the background layer alone minus the composite's (one more D pass)."""
        self.G.train()
        real = self.real_batch() if real is None else real
        fake = self.loss.generate(self.local_batch, self.rng, self.device, codes)
        d_total, d_logs = self.loss.d_phase(real, fake, self.rng)
        self.opt_d.zero_grad(set_to_none=True)  # also drops D's unsynced gradients of the last G phase
        self.scaler_d.scale(d_total).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        g_total, g_logs = self.loss.g_phase(fake, self.step, self.rng)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(g_total).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.step += 1
        if health:
            with self.precision.autocast():
                d_logs["health_bg_minus_composite"] = background_minus_composite(
                    self.D, fake.layers.background.detach(), fake.layers.image.detach())
        return {**d_logs, **g_logs}

    # ---- evaluation, samples, checkpoints ---------------------------------------------------------

    @torch.no_grad()
    def frechet_distance(self) -> float:
        """FD (FD-Lite0 or FD-RotNet) between fd_samples training images and as many samples (G in eval mode)."""
        embed = self.fd_embed
        if self._real_embedding is None:
            self._real_embedding = embed_batches(embed, (x.to(self.device).float() / 127.5 - 1
                                                         for x in self._fd_reals()))
        return fd_between(self._real_embedding, embed_batches(embed, self._fd_fakes()))

    def _fd_reals(self, bs: int = 100) -> Iterator[torch.Tensor]:
        """fd_samples training images (uint8 batches), the same ones at every evaluation."""
        idx = torch.randperm(self.real.shape[0], generator=torch.Generator().manual_seed(self.cfg.seed + 3))
        idx = idx[:self.cfg.fd_samples]
        return (self.real[idx[i:i + bs]] for i in range(0, len(idx), bs))

    def _fd_fakes(self, bs: int = 100) -> Iterator[torch.Tensor]:
        """fd_samples images of G in eval mode ([-1, 1] batches), from the same codes at every evaluation."""
        n, rng = self.cfg.fd_samples, torch.Generator().manual_seed(self.cfg.seed + 4)
        self.G.eval()
        try:
            for i in range(0, n, bs):
                yield self.G(*self.G.sample_codes(min(bs, n - i), rng, self.device)).image
        finally:
            self.G.train()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Rank 0's model-selection metrics: {"FD-RotNet": fd} offline (or FD-VGG16 with a VGG file), or
        with cfg.inception the standard {"FID", "precision", "recall"} by torch-fidelity."""
        if not self.cfg.inception:
            return {self.fd_name: self.frechet_distance()}
        from ..fid import inception_metrics, to_uint8

        return inception_metrics(torch.cat(list(self._fd_reals())),
                                 torch.cat([to_uint8(x).cpu() for x in self._fd_fakes()]),
                                 self.cfg.inception, self.device)

    @torch.no_grad()
    def write_samples(self) -> Path:
        self.G.eval()
        layers = self.G(*self.sample_codes)
        self.G.train()
        path = self.run_dir / "samples" / f"{self.step:07d}.png"
        save_png(grid(layer_rows(layers), scale=max(1, 128 // self.cfg.size)), path)
        return path

    def bundle(self, path: Path, metadata: dict[str, Any] | None = None) -> None:
        cfg = self.cfg
        ckpt.save_bundle(path, {"generator": self.G, "phi": self.phi, "discriminator": self.D,
                                "super_recovery": self.E_pi},
                         {"generator": cfg.generator, "phi": cfg.phi, "perturb": cfg.perturb,
                          "discriminator": cfg.discriminator, "train": cfg},
                         {"step": self.step, "best_fd": self.best_fd, "fd_metric": self.fd_name,
                          **(metadata or {})})

    @property
    def fd_name(self) -> str:
        return fd_name(self.cfg)

    def save(self) -> None:
        """state.safetensors first (resume needs only it), then the user-facing last bundle. Every rank
        calls this (each contributes its RNG state); rank 0 writes, the others wait at the barrier."""
        ranks = rank_state(self.rng, "rng", scaler_d=self.scaler_d, scaler_g=self.scaler_g)  # fp16: loss scales
        if ddp.is_main():
            ckpt.save_state(self.run_dir / STATE, {
                "step": self.step, "best_fd": self.best_fd, "fd_metric": self.fd_name, "config": to_dict(self.cfg),
                "nets": {name: getattr(self, attr).state_dict()
                         for name, attr in zip(NETWORKS, ("G", "D", "E_pi", "phi"), strict=True)},
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                **ranks, "torch_rng": torch.get_rng_state(),
            })
            self.bundle(self.run_dir / "last.safetensors")
        ddp.barrier()

    def init_from(self, path: str | Path) -> None:
        """Start from another run's weights (fine-tuning, e.g. photos from the embedded-data model): the
        networks only; optimisers, step and schedule start fresh. The architectures must match. An app
        bundle (a pipeline's result) carries no E_pi: it starts fresh, and learns the masks' super-category
        again within a few hundred iterations (its loss is near zero at 1,000 in our runs)."""
        bundle = ddp.on_main(lambda: ckpt.load_bundle(path, require=("generator", "discriminator")))
        for name, attr in zip(NETWORKS, ("G", "D", "E_pi", "phi"), strict=True):
            if name not in bundle.tensors:
                continue  # E_pi or Phi (G and D are required above): it starts fresh
            if name == "phi" and bundle.configs.get("phi") != to_dict(self.cfg.phi):
                continue  # Phi of other perturbation dims (e.g. E -> A): it starts fresh; unused outside E
            ckpt.load_into(getattr(self, attr), bundle.tensors[name], f"{name} of {path}")

    def load(self) -> None:
        """Resume from state.safetensors (read by rank 0, broadcast), under any number of ranks."""
        state = ddp.on_main(lambda: ckpt.load_state(self.run_dir / STATE))
        saved = to_dict(from_dict(GanTrainConfig, state["config"]))  # fills fields added since the run began
        if _resumable(json.loads(json.dumps(saved))) != _resumable(json.loads(json.dumps(to_dict(self.cfg)))):
            raise ckpt.CheckpointError(f"{self.run_dir}: the run was started with another configuration; "
                                       "resume with the same flags (see its config.json)")
        for name, attr in zip(NETWORKS, ("G", "D", "E_pi", "phi"), strict=True):
            ckpt.load_into(getattr(self, attr), state["nets"][name], name)
        nets = self.networks()
        for phase in PHASES.values():
            trainable = [p.requires_grad for name in phase.steps for p in nets[name].parameters()]
            getattr(self, phase.optimiser).load_state_dict(ckpt.held_only(state[phase.optimiser], trainable))
        load_rank_state(state, self.rng, "rng", scaler_d=self.scaler_d, scaler_g=self.scaler_g)
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best_fd = int(state["step"]), state["best_fd"]
        if state.get("fd_metric", "FD-RotNet") != self.fd_name:  # a run from before FD-Lite0: not comparable
            self.best_fd = None
        rewind_log(self.run_dir, self.step)

    # ---- the loop ---------------------------------------------------------------------------------

    def fit(self) -> GanRunResult:
        cfg, main = self.cfg, ddp.is_main()
        loop = TrainLoop(cfg.iters, self.step, cfg.batch, cfg.max_minutes, "ELGAN " + cfg.ablation, self.progress)
        while self.step < cfg.iters:
            log_due = (self.step + 1) % cfg.log_every == 0 or self._fd_due(self.step + 1)
            logs = self.train_step(health=log_due)  # layer health is read at the logged steps
            loop.bar.update(1)
            if log_due:  # an FD step is logged whatever log_every is
                logs = ddp.mean_scalars(logs)  # every rank's share of the batch counts
                elapsed, ips = loop.lap(self.step)
                if main:
                    self._log(logs, round(elapsed, 2), ips)
                loop.bar.set_postfix(d=f"{logs['d_adv']:.2f}", g=f"{logs['g_adv']:.2f}",
                                     mask=f"{logs['mask_area']:.2f}", ips=f"{ips:.0f}")
            if main and loop.due(self.step, cfg.sample_every):
                self.write_samples()
            out_of_time = loop.out_of_time()
            if loop.due(self.step, cfg.ckpt_every) or out_of_time:
                self.save()
            if out_of_time:
                break
        loop.close()
        if main and not (self.run_dir / "best.safetensors").exists():
            self.bundle(self.run_dir / "best.safetensors")  # no FD measured yet: the last model is all there is
        self.best_fd = ddp.broadcast_object(self.best_fd)
        return GanRunResult(self.run_dir / "best.safetensors", self.run_dir / "last.safetensors", self.step,
                            self.best_fd, loop.finished(self.step))

    def _fd_due(self, step: int | None = None) -> bool:
        return due(self.step if step is None else step, self.cfg.fd_every, self.cfg.iters)

    def _log(self, logs: dict[str, float], elapsed: float, ips: float) -> None:
        """Rank 0: one JSON line; at FD steps also the metrics, and best.safetensors if they improved."""
        record = {"step": self.step, "time": elapsed, "imgs_per_s": round(ips, 2), **logs}
        if self._fd_due():
            record.update(self.evaluate())
            fd = record[self.fd_name]
            if self.best_fd is None or fd < self.best_fd:
                self.best_fd = fd
                self.bundle(self.run_dir / "best.safetensors")
        warning = health_warning(record)
        if warning:
            record["health_warning"] = warning
        append_record(self.run_dir / LOG, record)


def train_gan(cfg: GanTrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> GanRunResult:
    """Train (or resume) an ELGAN run in `run_dir`; refuses to overwrite a run unless resuming. Under
    torchrun every process calls this; rank 0 checks and writes the run folder."""
    ddp.setup(cfg.device)
    run_dir = Path(run_dir)

    def prepare() -> None:
        claim_run(run_dir, resume)
        if cfg.inception:
            from ..fid import check_inception

            check_inception(cfg.inception)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(run_dir)  # half-written files of a run killed while saving
        write_config(run_dir, cfg)

    ddp.on_main(prepare)
    trainer = GanTrainer(cfg, run_dir, progress)
    if resume:
        trainer.load()
    elif cfg.init:
        trainer.init_from(cfg.init)
    return trainer.fit()


def _resumable(cfg: dict) -> dict:
    """The parts of a config that must not change across a resume (length, budget and placement may)."""
    return {k: v for k, v in cfg.items()
            if k not in ("iters", "max_minutes", "device", "threads", "precision", "data_workers")}
