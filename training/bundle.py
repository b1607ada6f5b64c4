"""Put a U-Net trained later (longer, or with other settings) into a model bundle beside its GAN.

  python -m training.bundle --gan runs/p/gan/best.safetensors --unet runs/unet-long/best.safetensors \\
      --out model.safetensors --half
  python -m training.bundle --gan checkpoints/default.safetensors --unet runs/u/best.safetensors \\
      --out checkpoints/default.safetensors --half --split test      # replace the shipped U-Net

--postprocess sets how the U-Net's thresholded mask is cleaned (none, or largest_filled: its largest
region with the holes filled, for photos of one object); the scores are measured with it.

The bundle's scores (what the app shows) are measured here on the U-Net as stored (after fp16 rounding
with --half), on --data / --split under the evaluation protocol; the GAN file's old scores described
another U-Net and are never carried over. --no-eval writes the bundle without scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from elgan.config import UNetConfig
from training._cli import add_knob


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bundle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gan", required=True, help="GAN checkpoint or bundle: generator, phi, discriminator")
    p.add_argument("--unet", required=True, help="U-Net checkpoint (or any bundle holding a 'unet')")
    p.add_argument("--out", required=True, help="bundle to write (.safetensors; replaced atomically)")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the size)")
    p.add_argument("--data", default="synthetic", help="data spec the scores are measured on")
    p.add_argument("--split", default="test", help="split the scores are measured on")
    p.add_argument("--size", type=int, default=128, help="evaluation resolution (the paper's 128)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images (n is recorded)")
    p.add_argument("--no-eval", action="store_true", help="write the bundle without scores")
    add_knob(p, UNetConfig, "postprocess", unset="the U-Net checkpoint's own")
    args = p.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        p.error(f"--out must name a .safetensors file, got {args.out!r}")
    if args.size < 16 or (args.limit is not None and args.limit < 1):
        p.error("--size must be >= 16 and --limit >= 1")

    from elgan.bundle import assemble_bundle
    from elgan.checkpoint import CheckpointError
    from elgan.data import DataError
    from elgan.evaluate import PROTOCOL, evaluate_unet_detailed
    from elgan.nets.unet import Segmenter

    def score(unet: Segmenter) -> dict[str, Any]:
        ev = evaluate_unet_detailed(unet, args.data, args.split, args.size, limit=args.limit)
        return {**ev.scores.as_dict(), "data": args.data, "split": args.split, "size": args.size,
                "protocol": PROTOCOL}

    try:
        metrics = assemble_bundle(args.gan, args.unet, args.out, None if args.no_eval else score, half=args.half,
                                  postprocess=args.postprocess)
    except (CheckpointError, DataError, OSError) as exc:
        print(f"error: {exc} (nothing was written)", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + ("" if metrics is None else f"; scores: {json.dumps(metrics)}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
