"""Generator forward at batch 1 (all four layers: bg, fg, mask, composite), the app's slider workload.

  python benchmarks/bench_generator.py                       # 64 px (shipped width 12) and 128 px (12, 64)
  python benchmarks/bench_generator.py --configs 128:64 --runs 200 --threads 2 --compile

For each size:width it times ≥ 100 forwards per execution variant and prints median / p95 ms next to the
FLOP floor (forward FLOPs ÷ this machine's fp32 matmul throughput, measured in the same run) and the
peak memory. Variants: no_grad, inference_mode, channels_last, bf16 autocast, background cached (only c
changed: G_b skipped, as the app does), torch.compile (with --compile). Random weights: speed does
not depend on training.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import flops_of, median_p95, peak_memory_mb, start, time_ms  # noqa: E402
from elgan.config import GeneratorConfig  # noqa: E402
from elgan.nets.generator import LayeredGenerator, compose  # noqa: E402


def variants(g: LayeredGenerator, z: torch.Tensor, c: torch.Tensor, compile_too: bool) -> dict:
    def plain() -> object:
        with torch.no_grad():
            return g(z, c)

    def infer() -> object:
        with torch.inference_mode():
            return g(z, c)

    g_cl = LayeredGenerator(g.cfg).eval()
    g_cl.load_state_dict(g.state_dict())
    g_cl = g_cl.to(memory_format=torch.channels_last)

    def channels_last() -> object:
        with torch.inference_mode():
            return g_cl(z, c)

    def bf16() -> object:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return g(z, c)

    with torch.inference_mode():
        background = g.background(z)

    def bg_cached() -> object:
        with torch.inference_mode():
            fg, mask = g.foreground(z, c, g.super_category(c))
            return compose(background, fg, mask)

    out = {"no_grad": plain, "inference_mode": infer, "channels_last": channels_last, "bf16 autocast": bf16,
           "background cached (c moved)": bg_cached}
    if compile_too:
        compiled = torch.compile(g)

        def comp() -> object:
            with torch.inference_mode():
                return compiled(z, c)

        t0 = time.perf_counter()
        comp()  # the compilation itself: what an app start would pay
        out[f"torch.compile (first call {time.perf_counter() - t0:.0f} s)"] = comp
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="64:12,128:12,128:64", help="size:width pairs")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (compiles first: slow)")
    args = p.parse_args()
    if args.runs < 100:
        p.error("--runs must be >= 100 (p95 needs them)")
    gflops = start("Generator forward, batch 1", args.threads)
    print("| size | width | variant | GFLOP | floor ms | median ms | p95 ms | × floor | peak RSS MiB (+rise) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pair in args.configs.split(","):
        size, width = (int(v) for v in pair.split(":"))
        g = LayeredGenerator(GeneratorConfig(size=size, width=width)).eval()
        z, c = torch.randn(1, g.cfg.z_dim), torch.tensor([7])
        with torch.no_grad():
            flops = flops_of(lambda g=g, z=z, c=c: g(z, c))
        for name, fn in variants(g, z, c, args.compile).items():
            with contextlib.suppress(Exception):
                fn()  # compile / first-call costs out of the timing
            ms = time_ms(fn, args.runs)
            med, p95 = median_p95(ms)
            peak, rise = peak_memory_mb(fn)
            floor = flops / (gflops * 1e9) * 1000
            print(f"| {size} | {width} | {name} | {flops / 1e9:.2f} | {floor:.1f} | {med:.1f} | {p95:.1f} | "
                  f"{med / floor:.1f} | {peak:.0f} (+{rise:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
