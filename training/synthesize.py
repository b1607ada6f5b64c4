"""Write a pseudo-segmentation dataset (section 3.4) from a trained generator as PNG pairs.

  python -m training.synthesize --gan runs/gan/best.safetensors --out runs/pairs --n 10000
  python -m training.synthesize --gan runs/gan/best.safetensors --out runs/pairs --n 10000   # resumes

Layout: <out>/synthetic.json, <out>/NNNNN/images/xxxxxx.png (RGB), <out>/NNNNN/masks/xxxxxx.png (8-bit
soft mask round(255 pi)). Shards already complete are skipped, and an interrupted shard is rewritten
with the same data, so re-running the same command finishes an interrupted job. Train on it with
``python -m training.train_unet --source folder:<out>``.
"""

from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.synthesize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gan", required=True, help="GAN checkpoint or model bundle holding a generator")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=10000, help="number of (image, mask) pairs")
    p.add_argument("--shard-size", type=int, default=1000, help="pairs per sub-folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved settings and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n < 1 or args.shard_size < 1 or args.batch < 1:
        parser.error("--n, --shard-size and --batch must be >= 1")
    settings = {"gan": args.gan, "out": args.out, "n": args.n, "shard_size": args.shard_size,
                "seed": args.seed, "batch": args.batch, "device": args.device}
    if args.dry_run:
        print(json.dumps(settings, indent=2, sort_keys=True))
        return 0

    from elgan.bundle import load_model_bundle
    from elgan.checkpoint import CheckpointError
    from elgan.synthesis import write_synthetic_dataset
    from elgan.train.unet_trainer import resolve_device

    try:
        generator = load_model_bundle(args.gan, resolve_device(args.device)).generator
        written = write_synthetic_dataset(generator, args.out, args.n, args.shard_size, args.seed, args.batch,
                                          progress=not args.no_progress)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{written} pairs written ({args.n - written} already there) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
