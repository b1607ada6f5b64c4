"""A sample grid of a trained generator: rows background | foreground | mask | image (the model cards').

  python -m training.sample_grid --gan checkpoints/default.safetensors --out docs/default_samples.png
  python -m training.sample_grid --gan runs/horse/bundle.safetensors --out grid.png --n 10 --seed 3

Codes are drawn from --seed (the same seed gives the same grid); --scale enlarges pixels (nearest).
Prints the mean mask area, the share of near-binary mask pixels and the share of near-empty masks
(area below 0.05) of a larger sample (--stats-n).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.sample_grid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gan", required=True, help="GAN checkpoint or model bundle holding a generator")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--n", type=int, default=8, help="columns (1-32)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scale", type=int, default=0, help="pixel enlargement (0: up to about 128 px per tile)")
    p.add_argument("--stats-n", type=int, default=500, help="samples for the mask statistics (0: none)")
    args = p.parse_args(argv)
    if not 1 <= args.n <= 32 or args.scale < 0 or args.stats_n < 0:
        p.error("--n must be in [1, 32], --scale and --stats-n >= 0")
    if not args.out.lower().endswith(".png"):
        p.error(f"--out must name a .png file, got {args.out!r}")

    import torch

    from elgan.bundle import load_model_bundle
    from elgan.checkpoint import CheckpointError
    from elgan.gan_loss import EMPTY_AREA, mask_statistics
    from elgan.visualize import grid, layer_rows, save_png

    try:
        g = load_model_bundle(args.gan).generator.eval()
    except (CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with torch.inference_mode():
        layers = g(*g.sample_codes(args.n, torch.Generator().manual_seed(args.seed)))
        save_png(grid(layer_rows(layers), scale=args.scale or max(1, 128 // g.cfg.size)), args.out)
        print(f"wrote {args.out} ({args.n} samples, seed {args.seed})")
        if args.stats_n:
            masks = torch.cat([g(*g.sample_codes(min(100, args.stats_n - i), torch.Generator().manual_seed(10_000 + i))
                                 ).mask for i in range(0, args.stats_n, 100)])
            stats = mask_statistics(masks)
            print(f"mask statistics over {len(masks)} samples: mean area {stats['mask_area']:.3f}, "
                  f"near-binary pixels {stats['mask_binary_frac']:.3f}, samples with area below "
                  f"{EMPTY_AREA} {stats['mask_empty_frac']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
