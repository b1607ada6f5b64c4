"""Reproduce Table 3 (configurations A-E) and the two collapse modes on the embedded dataset.

  python -m training.ablation --out runs/ablation32 --threads 1          # docs/ablation.md's table and plot
  python -m training.ablation --out runs/ablation32 --variants A,E       # a subset (same folder resumes)

Each variant is a full pipeline run in OUT/<variant> with the same seed, budget and perceptual net; the
table (markdown) goes to stdout and OUT/table.md, the mask-area curves to OUT/mask_area.png and
OUT/results.json. A stopped run continues where it stopped when started again with the same flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from elgan.ablation import VARIANTS, markdown_table, mask_area_curve, run_ablation
from elgan.config import SIZES, ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the variants' runs and the results")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--data", default="synthetic", help="GAN training data (scored on its test split)")
    p.add_argument("--size", type=int, choices=SIZES, default=32)
    p.add_argument("--width", type=int, default=12, help="G width (and D width unless --d-width)")
    p.add_argument("--d-width", type=int, default=0, help="D width (0: --width)")
    p.add_argument("--gan-iters", type=int, default=1000)
    p.add_argument("--unet-steps", type=int, default=400)
    p.add_argument("--rotnet-iters", type=int, default=300)
    p.add_argument("--fd-every", type=int, default=250)
    p.add_argument("--eval-limit", type=int, default=0, help="score only the first N test images (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        parser.error(f"--variants: unknown {bad} (choose from {VARIANTS})")
    for name in ("width", "gan_iters", "unet_steps", "rotnet_iters", "fd_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.eval_limit < 0 or args.threads < 0 or args.d_width < 0:
        parser.error("--eval-limit, --threads and --d-width must be >= 0")
    overrides = dict(size=args.size, gan_width=args.width, gan_iters=args.gan_iters, gan_minutes=0.0,
                     rotnet_iters=args.rotnet_iters, fd_every=args.fd_every, unet_steps=args.unet_steps,
                     unet_minutes=0.0, val_every=max(1, args.unet_steps // 4), val_size=200,
                     eval_limit=args.eval_limit, seed=args.seed, threads=args.threads)
    if args.d_width:  # only when given, so folders made before the flag existed still resume
        overrides["gan_d_width"] = args.d_width
    out = Path(args.out)
    try:
        results = run_ablation(out, variants, args.data, progress=not args.no_progress, **overrides)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from elgan.plots import line_chart

    table = markdown_table(results)
    (out / "table.md").write_text(table + "\n")
    curves = {r.name: mask_area_curve(out / r.name) for r in results}
    (out / "results.json").write_text(json.dumps({"results": [r._asdict() for r in results],
                                                  "mask_area": curves, "flags": vars(args)}, indent=1))
    line_chart(curves, out / "mask_area.png", title=f"mean generated mask area, {args.size} px",
               xlabel="GAN iteration", ylabel="mask area", y_range=(0.0, 1.0))
    print(table)
    print(f"plot: {out / 'mask_area.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
