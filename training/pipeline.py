"""The whole method in one command: ELGAN -> pseudo-segmentation pairs -> U-Net -> scores -> bundle.

  python -m training.pipeline --preset cpu --out runs/pipeline-cpu            # 64 px, < 2 h on 2 CPU cores
  python -m training.pipeline --preset cpu --out runs/pipeline-cpu --resume   # continue after a stop
  python -m training.pipeline --preset paper --data cub:PATH --out runs/paper-cub
  python -m training.pipeline --preset horse --data folder:../shared/data/weizmann_horse --out runs/horse
  python -m training.pipeline --preset horse --data folder:PHOTOS --gan-init checkpoints/default.safetensors
  python -m training.pipeline --preset tiny --out /tmp/tiny --dry-run         # print the resolved config
  torchrun --nproc_per_node=4 -m training.pipeline --preset paper --data cub:PATH --out runs/paper-4gpu

Stages: features (the RotNet the GAN needs, trained once per data, size, seed and --rotnet-iters into a
cache folder that runs share: --feature-cache), gan, unet, eval, bundle; --resume skips finished ones.

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

from elgan.config import MASK_FLOOR_UNSET, ConfigError, default_of, replace
from elgan.pipeline import DONE, PRESET_KNOBS, PipelineConfig, pipeline_config
from elgan.train import distributed
from training._cli import add_knob, print_config, run_stage, saved_config

# preset fields with a flag (--gan-iters -> gan_iters); type, help and range are their knobs' (PRESET_KNOBS).
# None is "not given" and keeps the preset's value.
OVERRIDES = (
    "gan_iters", "gan_width", "gan_batch", "gan_minutes", "rotnet_iters", "unet_steps", "unet_batch", "unet_base",
    "unet_minutes", "seed", "threads", "eval_limit", "ablation", "gan_init", "diffaugment", "gan_categories",
    "gan_group_size", "gan_d_width", "fd_every", "fd_samples", "val_size", "val_every", "disc", "perceptual",
    "fd_net", "gamma_bg", "gamma_indep", "mask_ceiling", "mask_floor", "max_translate", "unet_encoder",
    "unet_postprocess", "unet_augment",
)
TOP_FLAGS = ("eval_data", "eval_split", "eval_convention", "feature_cache")  # PipelineConfig knobs (None: default)
STAGE_FLAGS = ("device", "precision")  # preset fields of both training stages (None: the preset's)

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
    add_knob(p, PipelineConfig, "preset")
    add_knob(p, PipelineConfig, "data")
    p.add_argument("--out", default="", help="run folder (default: runs/pipeline-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out with its saved config")
    for name in TOP_FLAGS:
        add_knob(p, PipelineConfig, name, unset=f"{default_of(PipelineConfig, name)!r}")
    for name in STAGE_FLAGS:
        add_knob(p, *PRESET_KNOBS[name], unset="the preset's; both training stages")
    add_knob(p, PipelineConfig, "half")
    for name in OVERRIDES:  # --gan-d-width as train_gan's --d-width: not given is the generator's width
        unset = {"gan_d_width": "--gan-width (0 means the same)",
                 "mask_floor": MASK_FLOOR_UNSET}.get(name, "the preset's")
        add_knob(p, *PRESET_KNOBS[name], _flag(name), unset=unset)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    return p


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = {k: getattr(args, k) for k in (*OVERRIDES, *TOP_FLAGS, *STAGE_FLAGS) if getattr(args, k) is not None}
    if args.half:
        overrides["half"] = True
    return pipeline_config(args.preset, args.data, out=args.out, **overrides)


def resumed_config(cfg: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """What a resumed pipeline may change: placement (--threads) and the length and wall-time budget of its
    training stages (--gan-iters, --gan-minutes, --unet-steps, --unet-minutes), as train_gan / train_unet
    --resume allow. Everything that shapes the result stays as saved -- the equivariance ramp-up and the
    U-Net's lr drop too, which a fresh run derives from the lengths. A stage that has already ended (its
    marker is written) is not reopened, so a flag that could only change such stages is refused.
    --feature-cache (where the shared RotNets are, not what they are) may point the run at another cache
    folder; only a features stage that has not finished, or whose file is gone, looks there."""
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
    if args.feature_cache is not None:
        cfg = replace(cfg, feature_cache=args.feature_cache)
    return replace(cfg, gan=replace(cfg.gan, **changes["gan"]), unet=replace(cfg.unet, **changes["unet"]))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    distributed.setup(args.device or "auto")  # under torchrun: join the group; files are read by rank 0 alone
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
