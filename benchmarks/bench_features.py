"""Seconds per GAN iteration and peak memory for each discriminator and perceptual net.

  python benchmarks/bench_features.py [--sizes 64 128] [--iters 3] [--threads 2] [--width 12] [--batch 32]

Rows: config B (no perceptual net) and E (RotNet or EfficientNet-Lite0 in eq. 8), each with the paper's
D and the projected D, at each size. Every row runs in its own process (so each peak RSS is its own),
on random images (compute only), with the trainer's layout; the median of --iters full iterations
(D phase + G phase, layer health off) after two warm-up iterations. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = (("B", "paper", "-"), ("B", "projected", "-"), ("E", "paper", "rotnet"), ("E", "paper", "effnet"),
        ("E", "projected", "rotnet"), ("E", "projected", "effnet"))


def one_row(size: int, ablation: str, disc: str, perceptual: str, width: int, batch: int, iters: int,
            threads: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import elgan.train.gan_trainer as gt
    from benchmarks._common import peak_memory_mb
    from elgan.config import gan_config
    from elgan.data.base import ImageSet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images = torch.randint(0, 255, (256, 3, size, size), dtype=torch.uint8)
    gt.load_dataset = lambda *a, **k: ImageSet(images, None, "random")
    cfg = gan_config(size, ablation, width=width, batch=batch, rotnet_iters=1, device="cpu", disc=disc,
                     perceptual="rotnet" if perceptual == "-" else perceptual)
    tr = gt.GanTrainer(cfg, tempfile.mkdtemp(), progress=False)
    for _ in range(2):
        tr.train_step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        tr.train_step()
        times.append(time.perf_counter() - t0)
    peak, _ = peak_memory_mb(tr.train_step, repeats=1)
    return {"s_per_iter": statistics.median(times), "peak_mib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=12, help="generator and D width (the CPU presets' 12)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--row", default="", help=argparse.SUPPRESS)  # internal: run one row, print JSON
    args = p.parse_args()
    if args.row:
        size, ablation, disc, perceptual = args.row.split(",")
        print(json.dumps(one_row(int(size), ablation, disc, perceptual, args.width, args.batch, args.iters,
                                 args.threads)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    from benchmarks._common import header

    torch.set_num_threads(args.threads)
    print(header("GAN iteration by discriminator and perceptual net"))
    print(f"width {args.width}, batch {args.batch}, median of {args.iters} iterations after 2 warm-up, "
          "one process per row\n")
    print("| size | config | D | perceptual net | s / iteration | img/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for ablation, disc, perceptual in ROWS:
            out = subprocess.run([sys.executable, __file__, "--row", f"{size},{ablation},{disc},{perceptual}",
                                  "--iters", str(args.iters), "--threads", str(args.threads), "--width",
                                  str(args.width), "--batch", str(args.batch)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {size} | {ablation} | {disc} | {perceptual} | {r['s_per_iter']:.2f} | "
                  f"{args.batch / r['s_per_iter']:.1f} | {r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
