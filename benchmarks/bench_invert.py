"""Inversion cost and quality: seconds per image, reconstruction error, c recovered (elgan/invert.py).

    python benchmarks/bench_invert.py                                   # checkpoints/default.safetensors
    python benchmarks/bench_invert.py --bundle runs/X/best.safetensors --n 8 --threads 1
    python benchmarks/bench_invert.py --untrained                       # 64 px, width 12, random weights

Two kinds of target, n of each: the model's own samples G(z, c) (the right codes exist: is c found,
how close does it get?) and held-out scenes of the embedded synthetic test split (real-image case: how
far, and the IoU of G's mask with the true mask). Default InversionConfig unless --steps is given.
Prints a Markdown table with the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elgan.bundle import load_model_bundle  # noqa: E402
from elgan.config import GeneratorConfig  # noqa: E402
from elgan.data.synthetic import render_synthetic  # noqa: E402
from elgan.invert import InversionConfig, invert, to_target  # noqa: E402
from elgan.nets.generator import LayeredGenerator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="checkpoints/default.safetensors")
    p.add_argument("--untrained", action="store_true", help="a fresh 64 px width-12 generator instead")
    p.add_argument("--n", type=int, default=6, help="targets of each kind")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.untrained:
        torch.manual_seed(0)
        g, disc, name = LayeredGenerator(GeneratorConfig(size=64, width=12)).eval(), None, "untrained 64 px w12"
    else:
        bundle = load_model_bundle(args.bundle)
        g, disc, name = bundle.generator, bundle.discriminator, args.bundle
    cfg = InversionConfig() if args.steps is None else replace(InversionConfig(), steps=args.steps)
    size = g.cfg.size
    invert(g, torch.zeros(1, 3, size, size), replace(cfg, steps=1, refine_steps=1))  # warm-up, not timed

    z, c = g.sample_codes(args.n, torch.Generator().manual_seed(123))
    with torch.no_grad():
        samples = g(z, c).image
    rows = []
    for kind in ("own samples", "synthetic test"):
        secs, maes, explained, extra = [], [], [], []
        for i in range(args.n):
            if kind == "own samples":
                r = invert(g, samples[i:i + 1], cfg, disc)
                extra.append(float(r.c == int(c[i])))
            else:
                image, mask, _ = render_synthetic("test", i, size)
                r = invert(g, to_target(torch.from_numpy(image).permute(2, 0, 1)[None], size), cfg, disc)
                pred, truth = r.layers.mask[0, 0].numpy() > 0.5, mask.astype(bool)
                extra.append(float((pred & truth).sum() / max(1, (pred | truth).sum())))
            secs.append(r.seconds)
            maes.append(r.distances["pixel_mae"])
            explained.append(r.distances["explained"])
        rows.append((kind, statistics.median(secs), max(secs), statistics.mean(maes), min(explained),
                     max(explained), statistics.mean(extra)))
    print(f"Inversion of {name} ({size} px), {dt.date.today()}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), {cfg.restarts} restarts x {cfg.steps} + {cfg.refine_steps} steps\n")
    print("| targets | s/image (median) | s/image (max) | pixel error (mean) | explained (min-max) | c right / IoU |")
    print("|---|---|---|---|---|---|")
    for kind, med, mx, mae, ex_lo, ex_hi, extra_mean in rows:
        label = f"c right {extra_mean:.0%}" if kind == "own samples" else f"mask IoU {extra_mean:.3f}"
        print(f"| {kind} (n={args.n}) | {med:.2f} | {mx:.2f} | {mae:.3f} | {ex_lo:.2f} to {ex_hi:.2f} | {label} |")


if __name__ == "__main__":
    main()
