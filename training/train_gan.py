"""Train an Equivariant Layered GAN.

  python -m training.train_gan --config E --size 64 --iters 20000 --out runs/synthetic-E
  python -m training.train_gan --out runs/synthetic-E --resume          # continue a stopped run
  python -m training.train_gan --config A --data folder:../shared/data/weizmann_horse --dry-run
  torchrun --nproc_per_node=4 -m training.train_gan --size 128 --batch 128 --out runs/4gpu   # 4 GPUs, DDP

Under torchrun the batch is global (split over the processes) and rank 0 writes the run folder; see
docs/multi_gpu.md.

--config selects the Table 3 ablation: A translation + mask-size loss (PerturbGAN's counterpart),
B A with private-code recovery instead, C + scale, D + rotation, E + equivariance loss (ELGAN).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elgan.config import (
    MASK_FLOOR_UNSET,
    ConfigError,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LossConfig,
    PerturbConfig,
    PhiConfig,
    default_of,
    gan_config,
    mask_floor,
    replace,
)
from elgan.train import distributed
from training._cli import add_knob, print_config, run_stage, saved_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_gan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (config.json, log.jsonl, samples/, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    add_knob(p, GanTrainConfig, "ablation", "--config")
    add_knob(p, GanTrainConfig, "data")
    add_knob(p, GanTrainConfig, "size")
    add_knob(p, GeneratorConfig, "width")
    add_knob(p, DiscriminatorConfig, "width", "--d-width", unset="--width")
    add_knob(p, DiscriminatorConfig, "kind", "--disc")
    add_knob(p, GanTrainConfig, "perceptual")
    add_knob(p, GanTrainConfig, "fd_net")
    add_knob(p, LossConfig, "equi_detach_target", "--no-detach-target")
    add_knob(p, PhiConfig, "gain", "--phi-gain")
    add_knob(p, PhiConfig, "walk", "--phi-walk")
    add_knob(p, LossConfig, "moment_reg")
    add_knob(p, LossConfig, "gamma_equi")
    add_knob(p, LossConfig, "gamma_equi_pixel")
    add_knob(p, LossConfig, "gamma_bg")
    add_knob(p, LossConfig, "gamma_indep")
    add_knob(p, LossConfig, "mask_ceiling")
    add_knob(p, LossConfig, "mask_size_eta", "--mask-floor", unset=MASK_FLOOR_UNSET)
    add_knob(p, LossConfig, "gamma_reg")
    add_knob(p, LossConfig, "equi_form")
    add_knob(p, PerturbConfig, "max_translate")
    add_knob(p, PerturbConfig, "max_rotate_deg", "--max-rotate")
    add_knob(p, PerturbConfig, "max_log2_scale")
    add_knob(p, GanTrainConfig, "batch")
    add_knob(p, GeneratorConfig, "n_categories", "--categories")
    add_knob(p, GeneratorConfig, "group_size", note="--categories must be a multiple")
    add_knob(p, GanTrainConfig, "iters", unset=f"{default_of(GanTrainConfig, 'iters')}; with --resume: the saved "
             "length (give it to extend or shorten the run)")
    add_knob(p, GanTrainConfig, "lr")
    add_knob(p, GanTrainConfig, "seed")
    add_knob(p, LossConfig, "equi_rampup_iters", "--equi-rampup")
    add_knob(p, GanTrainConfig, "diffaugment")
    add_knob(p, GanTrainConfig, "rrc", "--no-rrc")
    add_knob(p, GanTrainConfig, "hflip", "--no-hflip")
    add_knob(p, GanTrainConfig, "rotnet")
    for name in ("rotnet_iters", "fd_every", "fd_samples", "sample_every", "ckpt_every", "log_every", "max_minutes",
                 "device", "threads"):
        add_knob(p, GanTrainConfig, name)
    add_knob(p, GanTrainConfig, "precision", unset="auto; with --resume: the saved one")
    add_knob(p, GanTrainConfig, "inception", note="needs torch-fidelity")
    add_knob(p, GanTrainConfig, "stream")
    add_knob(p, GanTrainConfig, "data_limit")
    add_knob(p, GanTrainConfig, "data_workers", unset=f"{default_of(GanTrainConfig, 'data_workers')}; with "
             "--resume: the saved number")
    add_knob(p, GanTrainConfig, "init", note="same --size and --width")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    return p


def config_from_args(args: argparse.Namespace) -> GanTrainConfig:
    def given(name: str) -> object:  # a flag whose "not given" (None) leaves the knob's default
        value = getattr(args, name)
        return default_of(GanTrainConfig, name) if value is None else value

    loss = {"equi_detach_target": args.equi_detach_target, "moment_reg": args.moment_reg,
            "equi_form": args.equi_form, "gamma_equi": args.gamma_equi, "gamma_equi_pixel": args.gamma_equi_pixel,
            "gamma_bg": args.gamma_bg, "gamma_indep": args.gamma_indep, "mask_ceiling": args.mask_ceiling,
            "gamma_reg": args.gamma_reg, "equi_rampup_iters": args.equi_rampup,  # -1: config.rampup_iters(iters)
            **mask_floor(args.mask_floor)}
    return gan_config(
        args.size, args.config, args.width, args.d_width, args.categories, args.group_size, disc=args.disc,
        perceptual=args.perceptual, fd_net=args.fd_net, phi_gain=args.phi_gain, phi_walk=args.phi_walk,
        data=args.data, batch=args.batch, iters=given("iters"),
        lr=args.lr, seed=args.seed, diffaugment=args.diffaugment, rrc=args.rrc, hflip=args.hflip,
        rotnet=args.rotnet,
        rotnet_iters=args.rotnet_iters, fd_every=args.fd_every, fd_samples=args.fd_samples,
        sample_every=args.sample_every, ckpt_every=args.ckpt_every, log_every=args.log_every,
        max_minutes=args.max_minutes, device=args.device, threads=args.threads,
        precision=given("precision"), inception=args.inception, stream=args.stream,
        data_workers=given("data_workers"), data_limit=args.data_limit, init=args.init,
        loss_overrides=loss, perturb_overrides={"max_translate": args.max_translate,
                                                "max_rotate_deg": args.max_rotate,
                                                "max_log2_scale": args.max_log2_scale})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    distributed.setup(args.device)  # under torchrun: join the group; files are read by rank 0 alone
    out = Path(args.out)
    try:
        if args.resume:
            cfg = saved_config(parser, out, GanTrainConfig)
            # what a resumed run may change: its length, wall-time budget and placement
            changes = {"max_minutes": args.max_minutes, "device": args.device, "threads": args.threads}
            if args.iters is not None:
                changes["iters"] = args.iters
            if args.precision is not None:
                changes["precision"] = args.precision
            if args.data_workers is not None:
                changes["data_workers"] = args.data_workers
            cfg = replace(cfg, **changes)
        else:
            cfg = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.dry_run:
        return print_config(cfg)
    from elgan.train.gan_trainer import train_gan

    outcome = run_stage(lambda: train_gan(cfg, out, resume=args.resume, progress=not args.no_progress))
    if outcome is None:
        return 2
    result, main = outcome
    if main:
        status = "finished" if result.completed else "stopped by --max-minutes (continue with --resume)"
        print(f"{status} at step {result.steps}; best {'FID' if cfg.inception else 'FD'} {result.best_fd}; "
              f"best: {result.best_checkpoint}; last: {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
