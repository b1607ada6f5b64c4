"""Generate (and cache) the embedded synthetic dataset, draw a sample grid, score the trivial baselines.

  python -m training.make_dataset                                   # all splits at 64 px
  python -m training.make_dataset --size 128 --splits train test --out /tmp/synth
  python -m training.make_dataset --size 64 --grid docs/synthetic_samples.png --baselines --json

Splits are cached as .npz (default <repo>/data/synthetic, or $ELGAN_DATA_DIR); a second run only loads.
--baselines prints ACC / IoU / mIoU (dataset-level) of a fixed centred ellipse and of per-image 2-means
colour clustering (best polarity) on the test split: a learned method must beat both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from elgan.baselines import ELLIPSE_AXES, baseline_scores
from elgan.config import SIZES
from elgan.data.synthetic import DEFAULT_COUNTS, SPLITS, cache_path, default_cache_dir, load_synthetic


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.make_dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, choices=SIZES, default=64, help="resolution (default 64)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                   help="splits to generate (default: all)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--n", type=int, default=None,
                   help="images per split (default: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_COUNTS.items()) + ")")
    p.add_argument("--out", default=None, help="cache directory (default: $ELGAN_DATA_DIR or data/synthetic)")
    p.add_argument("--grid", default=None, metavar="PATH.png",
                   help="write a PNG of sample images with their masks below them")
    p.add_argument("--grid-n", type=int, default=8, help="images in the grid (default 8)")
    p.add_argument("--baselines", action="store_true",
                   help="score the centred-ellipse and k-means baselines on the test split")
    p.add_argument("--workers", type=int, default=1,
                   help="processes rendering images (0 = one per CPU core; the result is the same)")
    p.add_argument("--json", action="store_true", help="end with one JSON line summarising the run")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def sample_grid(images: torch.Tensor, masks: torch.Tensor, tile: int = 128) -> np.ndarray:
    """[2 * T, k * T, 3] uint8: images on top, their masks below, each upscaled (nearest) to a tile."""
    k, _, h, _ = images.shape
    f = max(1, tile // h)
    ims = images.permute(0, 2, 3, 1).numpy()
    ms = np.repeat(masks.permute(0, 2, 3, 1).numpy() * 255, 3, axis=3)
    top, bottom = np.concatenate(list(ims), 1), np.concatenate(list(ms), 1)
    grid = np.concatenate([top, bottom], 0)
    return grid.repeat(f, 0).repeat(f, 1)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.n is not None and args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    if args.grid is not None and not args.grid.lower().endswith(".png"):
        parser.error(f"--grid must name a .png file, got {args.grid!r}")
    if not 1 <= args.grid_n <= 32:
        parser.error(f"--grid-n must be in [1, 32], got {args.grid_n}")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    workers = args.workers or os.cpu_count() or 1
    out = Path(args.out) if args.out else default_cache_dir()
    splits = list(dict.fromkeys(args.splits))
    if args.baselines and "test" not in splits:
        splits.append("test")

    summary: dict[str, object] = {"size": args.size, "seed": args.seed, "cache_dir": str(out), "splits": {}}
    data = {}
    for split in splits:
        n = args.n if args.n is not None else DEFAULT_COUNTS[split]
        path = cache_path(split, args.size, args.seed, n, out)
        cached = path.exists()
        t0 = time.perf_counter()
        data[split] = load_synthetic(split, args.size, args.seed, n, out, progress=not args.quiet, workers=workers)
        dt = time.perf_counter() - t0
        area = data[split][1].float().mean().item()
        print(f"{split:5s}: {n} images {args.size}px, {'loaded' if cached else 'generated'} in {dt:.1f} s, "
              f"mean object area {area:.1%} -> {path}")
        summary["splits"][split] = {"n": n, "path": str(path), "seconds": round(dt, 2), "cached": cached,
                                    "mean_area": round(area, 4)}

    if args.grid is not None:
        images, masks, _ = data[splits[0]]
        k = min(args.grid_n, len(images))
        grid = sample_grid(images[:k], masks[:k])
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(args.grid, optimize=True)
        print(f"grid of {k} {splits[0]} images -> {args.grid}")
        summary["grid"] = args.grid

    if args.baselines:
        images, masks, _ = data["test"]
        scores = baseline_scores(images, masks)
        print(f"\nbaselines on test ({len(images)} images, {args.size}px, dataset-level):")
        print(f"{'method':28s} {'ACC':>6s} {'IoU':>6s} {'mIoU':>6s}")
        names = {"centred_ellipse": f"centred ellipse {ELLIPSE_AXES}", "kmeans": "k-means RGB, best polarity"}
        for key, s in scores.items():
            print(f"{names.get(key, key):28s} {s.acc:6.3f} {s.iou:6.3f} {s.miou:6.3f}")
        summary["baselines"] = {key: s.as_dict() for key, s in scores.items()}

    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
