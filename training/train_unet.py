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

from elgan import distributed
from elgan.config import PRECISIONS, ConfigError, UNetConfig, replace
from elgan.unet_trainer import UNetTrainConfig
from training._cli import print_config, run_stage, saved_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_unet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (config.json, log.jsonl, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    p.add_argument("--gan", default="", help="GAN checkpoint or bundle whose generator streams the pairs")
    p.add_argument("--source", default="", help="stream (default with --gan) | folder:PATH | real:SPEC")
    p.add_argument("--size", type=int, default=None,
                   help="U-Net resolution (default: the generator's, or 64)")
    p.add_argument("--steps", type=int, default=None, help="default 12,000 (the paper's); with --resume: extend a run "
                   "(its lr drop stays where it was)")
    p.add_argument("--batch", type=int, default=95)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-drop-step", type=int, default=None, help="default: 2/3 of --steps (paper: 8000)")
    p.add_argument("--base", type=int, default=16, help="U-Net channels at the first level")
    p.add_argument("--depth", type=int, default=4, help="U-Net downsamplings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=500, help="stream: held-out synthetic pairs")
    p.add_argument("--val-fraction", type=float, default=0.1, help="folder / real: share held out")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop with a checkpoint after this long")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="auto (default: bf16 on CUDA GPUs "
                   "that support it, else fp32) | fp32 | bf16 | fp16 (with loss scaling); kept on --resume")
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
    size = args.size or (_generator_size(args.gan) if args.gan else 64)
    steps = 12000 if args.steps is None else args.steps
    drop = args.lr_drop_step if args.lr_drop_step is not None else steps * 2 // 3
    return UNetTrainConfig(source=source, gan=args.gan, size=size,
                           unet=UNetConfig(base=args.base, depth=args.depth), steps=steps,
                           batch=args.batch, lr=args.lr, lr_drop_step=drop, seed=args.seed,
                           val_fraction=args.val_fraction, val_size=args.val_size, val_every=args.val_every,
                           log_every=args.log_every, ckpt_every=args.ckpt_every, max_minutes=args.max_minutes,
                           device=args.device, threads=args.threads, precision=args.precision or "auto")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    distributed.setup(args.device)  # under torchrun: join the group; files are read by rank 0 alone
    out = Path(args.out)
    from elgan.checkpoint import CheckpointError

    try:
        if args.resume:
            cfg = saved_config(parser, out, UNetTrainConfig)
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
    from elgan.unet_trainer import train_unet

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
