"""The ELGAN training loop: explicit D and G phases, complete resume, JSON-lines logs, FD model selection.

Run folder layout (all writes atomic):
  config.json          the resolved GanTrainConfig
  log.jsonl            one JSON object per logged step (every loss term, mask statistics, images/s)
  samples/NNNNNNN.png  rows background | foreground | mask | image for fixed codes
  rotnet.safetensors   the perceptual network (trained first, self-supervised, unless supplied)
  state.safetensors    everything resume needs: networks, optimisers, step, RNG states, best FD
  last.safetensors     model bundle of the latest step; best.safetensors: lowest FD-RotNet so far
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from .config import GanTrainConfig, from_dict, to_dict
from .data import load_dataset
from .data.augment import diff_augment, random_hflip, random_resized_crop
from .fid import embed_batches, fd_between
from .gan_loss import ElganLoss
from .nets.discriminator import Discriminator, SuperCategoryRecovery
from .nets.generator import LayeredGenerator
from .nets.phi import LatentTransform
from .rotnet_trainer import load_feature_net, save_rotnet, train_rotnet
from .visualize import grid, layer_rows, save_png

NETWORKS = ("generator", "discriminator", "super_recovery", "phi")


@dataclass
class GanRunResult:
    best_checkpoint: Path  # lowest-FD bundle (the model the paper would use)
    last_checkpoint: Path  # bundle of the last step
    steps: int  # iterations completed
    best_fd: float | None  # FD-RotNet (or FID) of the best checkpoint
    completed: bool  # False when stopped early by max_minutes


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


class GanTrainer:
    def __init__(self, cfg: GanTrainConfig, run_dir: str | Path, progress: bool = True) -> None:
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.device = pick_device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = torch.Generator().manual_seed(cfg.seed)  # every draw of the run comes from here
        self.G = LayeredGenerator(cfg.generator).to(self.device)
        self.D = Discriminator(cfg.discriminator).to(self.device)
        self.E_pi = SuperCategoryRecovery(cfg.discriminator).to(self.device)
        self.phi = LatentTransform(cfg.phi).to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam([*self.G.parameters(), *self.phi.parameters(), *self.E_pi.parameters()],
                                      lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.step = 0
        self.best_fd: float | None = None
        self.real = load_dataset(cfg.data, "train", cfg.size, with_masks=False, seed=cfg.seed,
                                 limit=cfg.data_limit or None, progress=progress).images  # uint8 [N, 3, H, W], CPU
        self.feature_net = self._feature_net()
        self.loss = ElganLoss(cfg, self.G, self.D, self.E_pi, self.phi, self.feature_net.pyramid, self._diffaugment)
        fixed = torch.Generator().manual_seed(cfg.seed + 1)
        self.sample_codes = self.G.sample_codes(8, fixed, self.device)
        self._real_embedding: torch.Tensor | None = None

    # ---- pieces -----------------------------------------------------------------------------------

    def _feature_net(self):
        path = self.run_dir / "rotnet.safetensors"
        if self.cfg.rotnet:
            return load_feature_net(self.cfg.rotnet, self.device)
        if path.exists():
            return load_feature_net(path, self.device)
        rng = torch.Generator().manual_seed(self.cfg.seed + 2)
        bar = _bar(self.cfg.rotnet_iters, "RotNet (perceptual net)", self.progress)
        state = {}

        def on_step(step: int, loss: float, acc: float) -> None:
            state.update(loss=loss, acc=acc)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}")

        net = train_rotnet(self.real, self.cfg.rotnet_iters, rng, self.device, on_step=on_step)
        bar.close()
        save_rotnet(net, path, {"iters": self.cfg.rotnet_iters, "final_loss": state.get("loss"),
                                "final_acc": state.get("acc")})
        return net

    def _diffaugment(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return diff_augment(x, self.cfg.diffaugment, rng) if self.cfg.diffaugment else x

    def real_batch(self) -> torch.Tensor:
        idx = torch.randint(0, self.real.shape[0], (self.cfg.batch,), generator=self.rng)
        x = self.real[idx].to(self.device, non_blocking=True).float() / 127.5 - 1  # [B, 3, H, W]
        if self.cfg.hflip:
            x = random_hflip(x, self.rng)
        if self.cfg.rrc:
            x = random_resized_crop(x, (self.cfg.rrc_scale, 1.0), generator=self.rng)
        return x

    # ---- one iteration ----------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One D phase then one G phase on a shared generator pass; returns every logged term."""
        self.G.train()
        real = self.real_batch()
        fake = self.loss.generate(self.cfg.batch, self.rng, self.device)
        d_total, d_logs = self.loss.d_phase(real, fake, self.rng)
        self.opt_d.zero_grad(set_to_none=True)
        d_total.backward()
        self.opt_d.step()
        g_total, g_logs = self.loss.g_phase(fake, self.step, self.rng)
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()
        self.step += 1
        return {**d_logs, **g_logs}

    # ---- evaluation, samples, checkpoints ---------------------------------------------------------

    @torch.no_grad()
    def frechet_distance(self) -> float:
        """FD-RotNet between fd_samples training images and as many samples (G in eval mode)."""
        n, bs = self.cfg.fd_samples, 100
        embed = self.feature_net.embed
        if self._real_embedding is None:
            idx = torch.randperm(self.real.shape[0], generator=torch.Generator().manual_seed(self.cfg.seed + 3))[:n]
            self._real_embedding = embed_batches(
                embed, (self.real[idx[i:i + bs]].to(self.device).float() / 127.5 - 1 for i in range(0, len(idx), bs)))
        self.G.eval()
        rng = torch.Generator().manual_seed(self.cfg.seed + 4)
        fake = embed_batches(embed, (self.G(*self.G.sample_codes(min(bs, n - i), rng, self.device)).image
                                     for i in range(0, n, bs)))
        self.G.train()
        return fd_between(self._real_embedding, fake)

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
        return "FD-VGG16" if self.cfg.rotnet and not self.cfg.rotnet.endswith(".safetensors") else "FD-RotNet"

    def save(self) -> None:
        """state.safetensors first (resume needs only it), then the user-facing last bundle."""
        ckpt.save_state(self.run_dir / "state.safetensors", {
            "step": self.step, "best_fd": self.best_fd, "config": to_dict(self.cfg),
            "nets": {name: getattr(self, attr).state_dict() for name, attr in zip(NETWORKS, ("G", "D", "E_pi", "phi"),
                                                                                     strict=True)},
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
        })
        self.bundle(self.run_dir / "last.safetensors")

    def load(self) -> None:
        state = ckpt.load_state(self.run_dir / "state.safetensors")
        saved = to_dict(from_dict(GanTrainConfig, state["config"]))  # fills fields added since the run began
        if _resumable(json.loads(json.dumps(saved))) != _resumable(json.loads(json.dumps(to_dict(self.cfg)))):
            raise ckpt.CheckpointError(f"{self.run_dir}: the run was started with another configuration; "
                                       "resume with the same flags (see its config.json)")
        for name, attr in zip(NETWORKS, ("G", "D", "E_pi", "phi"), strict=True):
            ckpt.load_into(getattr(self, attr), state["nets"][name], name)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best_fd = int(state["step"]), state["best_fd"]
        _truncate_log(self.run_dir / "log.jsonl", self.step)

    # ---- the loop ---------------------------------------------------------------------------------

    def fit(self) -> GanRunResult:
        cfg = self.cfg
        start, completed = time.monotonic(), True
        bar = _bar(cfg.iters, "ELGAN " + cfg.ablation, self.progress, initial=self.step)
        t_last, n_last = time.monotonic(), self.step
        with open(self.run_dir / "log.jsonl", "a") as log:
            while self.step < cfg.iters:
                logs = self.train_step()
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.iters:
                    now = time.monotonic()
                    ips = (self.step - n_last) * cfg.batch / max(now - t_last, 1e-9)
                    t_last, n_last = now, self.step
                    record = {"step": self.step, "time": round(now - start, 2), "imgs_per_s": round(ips, 2), **logs}
                    if self.step % cfg.fd_every == 0 or self.step == cfg.iters:
                        record[self.fd_name] = fd = self.frechet_distance()
                        if self.best_fd is None or fd < self.best_fd:
                            self.best_fd = fd
                            self.bundle(self.run_dir / "best.safetensors")
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.set_postfix(d=f"{logs['d_adv']:.2f}", g=f"{logs['g_adv']:.2f}",
                                    mask=f"{logs['mask_area']:.2f}", ips=f"{ips:.0f}")
                if self.step % cfg.sample_every == 0 or self.step == cfg.iters:
                    self.write_samples()
                out_of_time = cfg.max_minutes > 0 and time.monotonic() - start > cfg.max_minutes * 60
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.iters or out_of_time:
                    self.save()
                if out_of_time and self.step < cfg.iters:
                    completed = False
                    break
        bar.close()
        if not (self.run_dir / "best.safetensors").exists():
            self.bundle(self.run_dir / "best.safetensors")  # no FD measured yet: the last model is all there is
        return GanRunResult(self.run_dir / "best.safetensors", self.run_dir / "last.safetensors", self.step,
                            self.best_fd, completed)


def train_gan(cfg: GanTrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> GanRunResult:
    """Train (or resume) an ELGAN run in `run_dir`; refuses to overwrite a run unless resuming."""
    run_dir = Path(run_dir)
    state = run_dir / "state.safetensors"
    if not resume and state.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose another folder")
    if resume and not state.exists():
        raise FileNotFoundError(f"{run_dir}: nothing to resume (no state.safetensors)")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_text(run_dir / "config.json", json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    trainer = GanTrainer(cfg, run_dir, progress)
    if resume:
        trainer.load()
    return trainer.fit()


def _resumable(cfg: dict) -> dict:
    """The parts of a config that must not change across a resume (length, budget and placement may)."""
    return {k: v for k, v in cfg.items() if k not in ("iters", "max_minutes", "device", "threads")}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so the log has no duplicate steps."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by the kill
    ckpt.atomic_write_text(path, "".join(k + "\n" for k in keep))


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, dynamic_ncols=True, unit="it")
