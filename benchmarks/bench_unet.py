"""U-Net segmentation speed: one image at 128², batched throughput, and a whole folder end to end.

  python benchmarks/bench_unet.py                                   # shipped bundle + the paper's U-Net
  python benchmarks/bench_unet.py --bundle runs/x/bundle.safetensors --runs 200 --threads 2

Rows: (1) the U-Net alone on a 128² input, batch 1, for the shipped architecture and the paper's
(base 64), per execution variant (no_grad, inference_mode, channels_last, bf16 autocast); (2) the
evaluation protocol on one 128² image with the shipped bundle (resize to its working size, forward,
bilinear upsampling to 128²); (3) the same batched (64 images per call): images/s; (4) the one-object
mask cleaning (elgan/cleanup.py) of a 1024x768 probability map, the app's largest; (5) segment_folder on
a folder of generated 320x240 JPEGs (decode, forward, two PNGs written per photo): images/s. Median and
p95 over --runs calls, FLOP floor from this machine's matmul throughput, peak memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import flops_of, median_p95, peak_memory_mb, start, time_ms  # noqa: E402
from elgan.bundle import load_unet  # noqa: E402
from elgan.cleanup import clean_probability  # noqa: E402
from elgan.config import UNetConfig  # noqa: E402
from elgan.evaluate import predict_probs, segment_folder  # noqa: E402
from elgan.nets.unet import build_unet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def row(what: str, fn, runs: int, gflops: float, flops: int | None, per_call: int = 1) -> None:
    med, p95 = median_p95(time_ms(fn, runs))
    peak, rise = peak_memory_mb(fn)
    floor = "-" if flops is None else f"{flops / (gflops * 1e9) * 1000:.1f}"
    ratio = "-" if flops is None else f"{med / (flops / (gflops * 1e9) * 1000):.1f}"
    print(f"| {what} | {floor} | {med:.1f} | {p95:.1f} | {ratio} | {per_call / med * 1000:.0f} | "
          f"{peak:.0f} (+{rise:.0f}) |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "checkpoints" / "default.safetensors"))
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--folder-images", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.runs < 100:
        p.error("--runs must be >= 100 (p95 needs them)")
    gflops = start("U-Net segmentation", args.threads)
    print("| what | floor ms | median ms | p95 ms | × floor | images/s | peak RSS MiB (+rise) |")
    print("|---|---|---|---|---|---|---|")
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    shipped = load_unet(args.bundle).eval()
    arch = (f"depth {shipped.cfg.depth}" if shipped.cfg.encoder == "scratch"
            else f"frozen Lite0 encoder x{shipped.cfg.encoder_scale}")
    for label, cfg in ((f"shipped arch (base {shipped.cfg.base}, {arch})", shipped.cfg),
                       ("paper arch (base 64, depth 4)", UNetConfig(base=64, depth=4))):
        net = build_unet(cfg).eval()
        with torch.no_grad():
            flops = flops_of(lambda net=net: net(x))
        net_cl = build_unet(cfg).eval().to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def nograd(net=net) -> object:
            with torch.no_grad():
                return net(x)

        def infer(net=net) -> object:
            with torch.inference_mode():
                return net(x)

        def cl(net_cl=net_cl, x_cl=x_cl) -> object:
            with torch.inference_mode():
                return net_cl(x_cl)

        def bf16(net=net) -> object:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x)

        for name, fn in (("no_grad", nograd), ("inference_mode", infer), ("channels_last", cl),
                         ("bf16 autocast", bf16)):
            row(f"U-Net 128² batch 1, {label}, {name}", fn, args.runs, gflops, flops)

    img = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    size = shipped.input_size
    with torch.no_grad():
        flops = flops_of(lambda: predict_probs(shipped, img))
    row(f"protocol, shipped bundle: 128² -> {size}² -> U-Net -> 128², 1 image", lambda: predict_probs(shipped, img),
        args.runs, gflops, flops)
    batch = torch.randint(0, 256, (args.batch, 3, 128, 128), dtype=torch.uint8)
    row(f"protocol, shipped bundle, batch {args.batch}", lambda: predict_probs(shipped, batch),
        max(100, args.runs // 10), gflops, flops * args.batch, per_call=args.batch)

    # the one-object cleaning (elgan/cleanup.py) at the app's largest working size: a smooth random
    # probability map (blobs of every size, many holes) is its worst ordinary case
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 96, 128), 3, 1, 1)
    prob = torch.nn.functional.interpolate(smooth, size=(768, 1024), mode="bilinear")[0, 0].numpy()
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    row("mask cleaning (largest_filled) of a 1024x768 probability map", lambda: clean_probability(
        prob, 0.5, "largest_filled"), max(10, args.runs // 10), gflops, None)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.folder_images):
            Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(src / f"{i:04d}.jpg")
        t0 = time.perf_counter()
        report = segment_folder(shipped, src, Path(tmp) / "out")
        dt = time.perf_counter() - t0
        print(f"| segment_folder, {report.segmented} JPEGs 320x240 (decode + U-Net + 2 PNGs each) | - | "
              f"{dt / report.segmented * 1000:.1f} | - | - | {report.segmented / dt:.0f} | - |")


if __name__ == "__main__":
    main()
