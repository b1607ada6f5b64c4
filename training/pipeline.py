"""The whole method in one command: ELGAN -> pseudo-segmentation pairs -> U-Net -> scores -> bundle.

  python -m training.pipeline --preset cpu --out runs/pipeline-cpu            # 64 px, < 2 h on 2 CPU cores
  python -m training.pipeline --preset cpu --out runs/pipeline-cpu --resume   # continue after a stop
  python -m training.pipeline --preset paper --data cub:PATH --out runs/paper-cub
  python -m training.pipeline --preset horse --data folder:../shared/data/weizmann_horse --out runs/horse
  python -m training.pipeline --preset horse --data folder:PHOTOS --gan-init checkpoints/default.safetensors
  python -m training.pipeline --preset tiny --out /tmp/tiny --dry-run         # print the resolved config
  torchrun --nproc_per_node=4 -m training.pipeline --preset paper --data cub:PATH --out runs/paper-4gpu

Presets: paper (the paper's settings: 128 px, generator width 64, batch 32, 810 CUB epochs; U-Net 12k
steps x 95), cpu (64 px, sized for 2 CPU cores and capped by wall time per stage), tiny (32 px, a few
dozen steps: a smoke test). The result is <out>/bundle.safetensors, which the app loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from elgan import distributed
from elgan.config import PRECISIONS, ConfigError, replace
from elgan.pipeline import DONE, PRESETS, PipelineConfig, pipeline_config
from training._cli import print_config, run_stage, saved_config

# flag -> PresetSpec / PipelineConfig field (None values are "not given" and keep the preset's)
OVERRIDES = {
    "gan_iters": int, "gan_width": int, "gan_batch": int, "gan_minutes": float, "rotnet_iters": int,
    "unet_steps": int, "unet_batch": int, "unet_base": int, "unet_minutes": float, "seed": int,
    "threads": int, "eval_limit": int, "ablation": str, "gan_init": str, "diffaugment": str,
    "gan_categories": int, "gan_group_size": int, "gan_d_width": int, "fd_every": int, "fd_samples": int,
    "val_size": int, "val_every": int, "disc": str, "perceptual": str, "fd_net": str,
    "gamma_bg": float,
}

# flags that --resume accepts (placement, and the length / wall-time budget of the training stages)
# -> the (stage, field) pairs each one sets in the saved config
RESUME_OVERRIDES = {
    "threads": (("gan", "threads"), ("unet", "threads")),
    "gan_iters": (("gan", "iters"),),
    "gan_minutes": (("gan", "max_minutes"),),
    "unet_steps": (("unet", "steps"),),
    "unet_minutes": (("unet", "max_minutes"),),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="cpu")
    p.add_argument("--data", default="synthetic", help="GAN training images: synthetic | cub:PATH | "
                   "folder:PATH | lsun:PATH")
    p.add_argument("--out", default="", help="run folder (default: runs/pipeline-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    p.add_argument("--eval-data", default=None, help="data spec to score (default: --data)")
    p.add_argument("--eval-split", default=None, help="split to score (default: test)")
    p.add_argument("--eval-convention", choices=("dataset", "per_image"), default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--half", action="store_true", help="store fp16 weights in the bundle (half the size)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="training precision of both stages: "
                   "auto (bf16 on CUDA GPUs that support it, else fp32) | fp32 | bf16 | fp16")
    for name, kind in OVERRIDES.items():
        p.add_argument(_flag(name), type=kind, default=None,
                       help="override the preset's " + name)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    return p


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    for key in ("eval_data", "eval_split", "eval_convention", "device", "precision"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.half:
        overrides["half"] = True
    return pipeline_config(args.preset, args.data, out=args.out, **overrides)


def resumed_config(cfg: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """What a resumed pipeline may change: placement (--threads) and the length and wall-time budget of its
    training stages (--gan-iters, --gan-minutes, --unet-steps, --unet-minutes), as train_gan / train_unet
    --resume allow. Everything that shapes the result stays as saved -- the equivariance ramp-up and the
    U-Net's lr drop too, which a fresh run derives from the lengths. A stage that has already ended (its
    marker is written) is not reopened, so a flag that could only change such stages is refused."""
    others = [_flag(k) for k in OVERRIDES if getattr(args, k) is not None and k not in RESUME_OVERRIDES]
    if others:
        raise ConfigError(f"--resume keeps the saved configuration; it may change only "
                          f"{', '.join(map(_flag, RESUME_OVERRIDES))}, not {', '.join(others)}")
    ended = distributed.on_main(lambda: [st for st in ("gan", "unet") if (cfg.run_dir / st / DONE).exists()])
    idle = [_flag(k) for k, targets in RESUME_OVERRIDES.items()
            if getattr(args, k) is not None and all(st in ended for st, _ in targets)]
    if idle:  # accepted and then silently ignored would be worse than refused
        raise ConfigError(f"{', '.join(idle)} would change nothing: the stage(s) {', '.join(ended)} of "
                          f"{cfg.run_dir} have ended ({DONE} written) and are not reopened; to extend one, "
                          "run train_gan / train_unet --resume on its folder")
    changes: dict[str, dict[str, Any]] = {"gan": {}, "unet": {}}
    for name, targets in RESUME_OVERRIDES.items():
        if getattr(args, name) is not None:
            for stage, field in targets:
                changes[stage][field] = getattr(args, name)
    return replace(cfg, gan=replace(cfg.gan, **changes["gan"]), unet=replace(cfg.unet, **changes["unet"]))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    distributed.setup(args.device or "auto")  # under torchrun: join the group; files are read by rank 0 alone
    for name in OVERRIDES:
        value = getattr(args, name)
        if isinstance(value, (int, float)) and value < 0:
            parser.error(f"{_flag(name)} must be >= 0")
    try:
        if args.resume:
            if not args.out:
                parser.error("--resume needs --out")
            # the folder it was read from, even if the run was moved or copied since it began
            cfg = replace(saved_config(parser, Path(args.out), PipelineConfig), out=str(args.out))
            cfg = resumed_config(cfg, args)
        else:
            cfg = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.dry_run:
        return print_config(cfg)
    from elgan.pipeline import run_pipeline

    outcome = run_stage(lambda: run_pipeline(cfg, cfg.run_dir, resume=args.resume, progress=not args.no_progress))
    if outcome is None:
        return 2
    result, main = outcome
    if main and result.metrics is not None:
        print(json.dumps({k: result.metrics[k] for k in ("acc", "iou", "miou", "n")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
