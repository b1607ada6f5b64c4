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

from elgan import distributed
from elgan.config import (
    ABLATIONS,
    DISCRIMINATORS,
    EQUI_FORMS,
    FD_NETS,
    MOMENT_REGS,
    PERCEPTUAL_NETS,
    PRECISIONS,
    SIZES,
    WALKS,
    ConfigError,
    GanTrainConfig,
    gan_config,
    replace,
)
from training._cli import print_config, run_stage, saved_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_gan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (config.json, log.jsonl, samples/, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    p.add_argument("--config", choices=ABLATIONS, default="E", help="Table 3 ablation configuration")
    p.add_argument("--data", default="synthetic", help="synthetic | cub:PATH | folder:PATH | lsun:PATH")
    p.add_argument("--size", type=int, choices=SIZES, default=64, help="working resolution")
    p.add_argument("--width", type=int, default=16, help="generator width (FineGAN ngf; the paper's is 64)")
    p.add_argument("--d-width", type=int, default=None, help="discriminator width (default: --width)")
    p.add_argument("--disc", choices=DISCRIMINATORS, default="paper", help="paper: the paper's D | projected: "
                   "Projected GAN's D on frozen ImageNet EfficientNet-Lite0 features (from an installed package)")
    p.add_argument("--perceptual", choices=PERCEPTUAL_NETS, default="rotnet", help="perceptual net of the "
                   "equivariance loss: rotnet (self-supervised on the run's images) | effnet (ImageNet Lite0)")
    p.add_argument("--fd-net", choices=FD_NETS, default="lite0", help="model-selection FD: lite0 (FD-Lite0, "
                   "comparable across runs) | rotnet (FD-RotNet, within one run)")
    p.add_argument("--no-detach-target", action="store_true", help="let gradients flow through the "
                   "equivariance target T^X G(z, c) too (default: detached)")
    p.add_argument("--phi-gain", type=float, default=1.0, help="multiplies Phi's output: the latent walk's "
                   "starting length (1: the paper's MLP as initialised)")
    p.add_argument("--phi-walk", choices=WALKS, default="free", help="free: z + Phi(eps), the paper's | "
                   "fixed_length: Phi chooses the direction, the length is --phi-gain * |eps|")
    p.add_argument("--moment-reg", choices=MOMENT_REGS, default="batch", help="Phi's moment regulariser: "
                   "batch (the paper's estimate) | known (z's moments taken as known: no z sampling noise)")
    p.add_argument("--gamma-equi", type=float, default=None, help="final weight of the equivariance loss "
                   "(default 0.5, the paper's)")
    p.add_argument("--gamma-bg", type=float, default=None, help="weight of D's 'background layer alone is "
                   "fake' term (default 0: off, as in the paper)")
    p.add_argument("--gamma-reg", type=float, default=None, help="weight of Phi's moment regulariser "
                   "(default 1; the paper does not state its value)")
    p.add_argument("--equi-form", choices=EQUI_FORMS, default="absolute", help="equivariance loss: absolute "
                   "(eq. 8 as written) | relative (divided by the distance of the unmoved image to the target)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--categories", type=int, default=200, help="size of the private code c (the paper's 200)")
    p.add_argument("--group-size", type=int, default=10, help="fine categories per super-category "
                   "(c_sup = c // group size; --categories must be a multiple)")
    p.add_argument("--iters", type=int, default=None, help="total iterations (default 20000; with --resume: "
                   "extend or shorten the run)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--equi-rampup", type=int, default=None, help="t_1 of the equivariance ramp-up, iterations "
                   "(default: 400/810 of --iters, as the paper's 400 of 810 epochs)")
    p.add_argument("--diffaugment", default="color", help="DiffAugment policy on D's inputs ('' to disable)")
    p.add_argument("--no-rrc", action="store_true", help="disable RandomResizedCrop of real images")
    p.add_argument("--no-hflip", action="store_true", help="disable the random horizontal flip of real images")
    p.add_argument("--rotnet", default="", help="perceptual net file (RotNet bundle or torchvision VGG16 weights)")
    p.add_argument("--rotnet-iters", type=int, default=600)
    p.add_argument("--fd-every", type=int, default=1000)
    p.add_argument("--fd-samples", type=int, default=1000)
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop with a checkpoint after this long")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="auto (default: bf16 on CUDA GPUs "
                   "that support it, else fp32) | fp32 | bf16 | fp16 (with loss scaling); kept on --resume")
    p.add_argument("--inception", default="", help="Inception-v3 weights (torch-fidelity's weights-inception-"
                   "2015-12-05-6726825d.pth): select by FID, log precision/recall (needs torch-fidelity)")
    p.add_argument("--stream", action="store_true", help="lsun:PATH LMDB: stream images with DataLoader "
                   "workers instead of loading them into memory")
    p.add_argument("--data-limit", type=int, default=0, help="use only the first N training images "
                   "(0: all); quick trials and tests")
    p.add_argument("--data-workers", type=int, default=None, help="DataLoader workers per process when "
                   "streaming (default 4)")
    p.add_argument("--init", default="", help="GAN checkpoint (e.g. another run's best.safetensors) whose "
                   "G, D, E_pi and Phi weights start this run: fine-tuning; same --size and --width")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    return p


def config_from_args(args: argparse.Namespace) -> GanTrainConfig:
    iters = args.iters if args.iters is not None else 20000
    loss = {"equi_detach_target": not args.no_detach_target, "moment_reg": args.moment_reg,
            "equi_form": args.equi_form}
    if args.gamma_equi is not None:
        loss["gamma_equi"] = args.gamma_equi
    if args.gamma_bg is not None:
        loss["gamma_bg"] = args.gamma_bg
    if args.gamma_reg is not None:
        loss["gamma_reg"] = args.gamma_reg
    if args.equi_rampup is not None:  # else config.rampup_iters(iters), the one default
        loss["equi_rampup_iters"] = args.equi_rampup
    return gan_config(
        args.size, args.config, args.width, args.d_width, args.categories, args.group_size, disc=args.disc,
        perceptual=args.perceptual, fd_net=args.fd_net, phi_gain=args.phi_gain, phi_walk=args.phi_walk,
        data=args.data, batch=args.batch, iters=iters,
        lr=args.lr, seed=args.seed, diffaugment=args.diffaugment, rrc=not args.no_rrc, hflip=not args.no_hflip,
        rotnet=args.rotnet,
        rotnet_iters=args.rotnet_iters, fd_every=args.fd_every, fd_samples=args.fd_samples,
        sample_every=args.sample_every, ckpt_every=args.ckpt_every, log_every=args.log_every,
        max_minutes=args.max_minutes, device=args.device, threads=args.threads,
        precision=args.precision or "auto", inception=args.inception, stream=args.stream,
        data_workers=4 if args.data_workers is None else args.data_workers,
        data_limit=args.data_limit, init=args.init,
        loss_overrides=loss)


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
    from elgan.gan_trainer import train_gan

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
