"""Train the segmentation U-Net of section 3.4 on pseudo-segmentation pairs (or, as an upper bound, on
a dataset's true masks).

  python -m training.train_unet --gan runs/gan/best.safetensors --out runs/unet        # stream from G
  python -m training.train_unet --source folder:runs/pairs --out runs/unet-disk        # written pairs
  python -m training.train_unet --source real:cub:PATH --out runs/unet-supervised      # upper bound
  python -m training.train_unet --out runs/unet --resume
  python -m training.train_unet --out runs/unet --resume --steps 20000                # extend a run
  torchrun --nproc_per_node=4 -m training.train_unet --gan runs/gan/best.safetensors --out runs/unet-4gpu

Defaults are the paper's: Adam lr 1e-3, batch 95, 12,000 steps, lr x 0.2 from step 8,000; the kept
checkpoint (best.safetensors) has the best IoU on held-out *synthetic* pairs, never on test masks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elgan.config import ConfigError, UNetConfig, default_of, lr_drop_step, replace
from elgan.train import distributed
from elgan.train.unet_trainer import UNetTrainConfig
from training._cli import add_knob, print_config, run_stage, saved_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_unet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (config.json, log.jsonl, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    add_knob(p, UNetTrainConfig, "gan")
    add_knob(p, UNetTrainConfig, "source", note="stream needs --gan")
    add_knob(p, UNetTrainConfig, "size", unset="the generator's, or 64")
    add_knob(p, UNetTrainConfig, "steps", unset=f"{default_of(UNetTrainConfig, 'steps')}; with --resume: the saved "
             "length (give it to extend a run; its lr drop stays where it was)")
    add_knob(p, UNetTrainConfig, "batch")
    add_knob(p, UNetTrainConfig, "lr")
    add_knob(p, UNetTrainConfig, "lr_drop_step", unset="2/3 of --steps")
    add_knob(p, UNetConfig, "base")
    add_knob(p, UNetConfig, "depth")
    add_knob(p, UNetConfig, "encoder")
    add_knob(p, UNetConfig, "encoder_scale")
    add_knob(p, UNetConfig, "postprocess")
    add_knob(p, UNetTrainConfig, "augment")
    for name in ("seed", "val_size", "val_fraction", "val_every", "log_every", "ckpt_every", "max_minutes", "device",
                 "threads"):
        add_knob(p, UNetTrainConfig, name)
    add_knob(p, UNetTrainConfig, "precision", unset="auto; with --resume: the saved one")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    return p


def _generator_size(gan: str) -> int:
    from elgan.checkpoint import load_bundle

    return int(distributed.on_main(lambda: load_bundle(gan, require=["generator"]).config("generator")["size"]))


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> UNetTrainConfig:
    source = args.source or "stream"
    if source == "stream" and not args.gan:
        parser.error("the stream source needs --gan CKPT (or pass --source folder:PATH / real:SPEC)")
    if source != "stream" and args.gan:
        parser.error("--gan only feeds the stream source; drop it or drop --source")
    size = args.size or (_generator_size(args.gan) if args.gan else default_of(UNetTrainConfig, "size"))
    steps = default_of(UNetTrainConfig, "steps") if args.steps is None else args.steps
    drop = args.lr_drop_step if args.lr_drop_step is not None else lr_drop_step(steps)
    return UNetTrainConfig(source=source, gan=args.gan, size=size,
                           unet=UNetConfig(base=args.base, depth=args.depth, encoder=args.encoder,
                                           encoder_scale=args.encoder_scale, postprocess=args.postprocess),
                           steps=steps,
                           batch=args.batch, lr=args.lr, lr_drop_step=drop, seed=args.seed, augment=args.augment,
                           val_fraction=args.val_fraction, val_size=args.val_size, val_every=args.val_every,
                           log_every=args.log_every, ckpt_every=args.ckpt_every, max_minutes=args.max_minutes,
                           device=args.device, threads=args.threads,
                           precision=args.precision or default_of(UNetTrainConfig, "precision"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    distributed.setup(args.device)  # under torchrun: join the group; files are read by rank 0 alone
    out = Path(args.out)
    from elgan.checkpoint import CheckpointError

    try:
        if args.resume:
            cfg = saved_config(parser, out, UNetTrainConfig)
            cfg = replace(cfg, device=args.device, threads=args.threads)  # placement: as given, as train_gan
            if args.max_minutes:  # a resumed run may get a new wall-time budget
                cfg = replace(cfg, max_minutes=args.max_minutes)
            if args.precision is not None:
                cfg = replace(cfg, precision=args.precision)
            if args.steps is not None:  # a longer (or shorter) run; the saved lr schedule is kept
                cfg = replace(cfg, steps=args.steps)
        else:
            cfg = config_from_args(args, parser)
    except (ConfigError, CheckpointError) as exc:
        parser.error(str(exc))
    if args.dry_run:
        return print_config(cfg)
    from elgan.train.unet_trainer import train_unet

    outcome = run_stage(lambda: train_unet(cfg, out, resume=args.resume, progress=not args.no_progress))
    if outcome is None:
        return 2
    r, main = outcome
    if not main:
        return 0
    status = "finished" if r.finished else "stopped by --max-minutes (continue with --resume)"
    iou = "-" if r.best_val_iou is None else f"{r.best_val_iou:.4f}"
    print(f"{status} at step {r.steps} ({r.imgs_per_s:.0f} img/s); best synthetic-val IoU {iou}; "
          f"best: {r.best_checkpoint}; last: {r.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
