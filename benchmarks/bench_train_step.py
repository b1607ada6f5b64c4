"""Time one ELGAN training iteration, split by phase, next to its FLOP count and this machine's floor.

  python benchmarks/bench_train_step.py --size 64 --width 12 --batch 32 [--iters 10] [--threads 2] [--profile]
      [--layout trainer|nchw]

Prints a table: milliseconds per phase (median over --iters iterations), the FLOPs of the forward and
backward passes (torch.utils.flop_counter), the measured matmul throughput of this machine (the
same run) and the fraction of the FLOP floor reached. Uses random real images so that only compute
is measured (the data pipeline is a memory index, negligible). --profile adds torch.profiler's top
operators of one iteration (self CPU time), the evidence behind the distance to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import elgan.train.gan_trainer as gt  # noqa: E402
from benchmarks._common import flops_of, header, matmul_gflops, peak_memory_mb  # noqa: E402
from elgan import losses  # noqa: E402
from elgan.config import gan_config  # noqa: E402
from elgan.data.base import ImageSet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--config", default="E")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top 15 operators")
    p.add_argument("--layout", choices=("trainer", "nchw"), default="trainer",
                   help="trainer: the nets as GanTrainer lays them out (channels_last on CPU); "
                        "nchw: PyTorch's default layout (the before figure)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    s = args.size
    fake_images = torch.randint(0, 255, (256, 3, s, s), dtype=torch.uint8)
    gt.load_dataset = lambda *a, **k: ImageSet(fake_images, None, "random")
    cfg = gan_config(s, args.config, width=args.width, batch=args.batch, rotnet_iters=1, device="cpu")
    tr = gt.GanTrainer(cfg, tempfile.mkdtemp(), progress=False)
    if args.layout == "nchw":
        for net in (tr.G, tr.D, tr.E_pi, tr.feature_net):
            net.to(memory_format=torch.contiguous_format)
    for _ in range(2):
        tr.train_step()

    names = ("generator pass (fwd)", "D phase (fwd+bwd+step)", "perceptual net (fwd, inside G phase)",
             "G phase (fwd+bwd+step)", "total")
    phases: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(args.iters):
        t0 = time.perf_counter()
        real = tr.real_batch()
        fake = tr.loss.generate(cfg.batch, tr.rng, tr.device)
        t1 = time.perf_counter()
        d_total, _ = tr.loss.d_phase(real, fake, tr.rng)
        tr.opt_d.zero_grad(set_to_none=True)
        d_total.backward()
        tr.opt_d.step()
        t2 = time.perf_counter()
        if cfg.loss.equivariance:
            with torch.no_grad():
                losses.equivariance_loss(tr.feature_net.pyramid, fake.walked, fake.perturbed)
        t3 = time.perf_counter()
        g_total, _ = tr.loss.g_phase(fake, tr.step, tr.rng)
        tr.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        tr.opt_g.step()
        t4 = time.perf_counter()
        for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0 - (t3 - t2)), strict=True):
            phases[k].append(v * 1000)

    flops = flops_of(tr.train_step)
    peak, rise = peak_memory_mb(tr.train_step, repeats=2)
    gflops = matmul_gflops()
    total_ms = statistics.median(phases["total"])
    floor_ms = flops / (gflops * 1e9) * 1000
    print(header("ELGAN training iteration"))
    conv_w = next(w for w in tr.G.parameters() if w.dim() == 4)
    layout = "channels_last" if conv_w.is_contiguous(memory_format=torch.channels_last) else "NCHW"
    print(f"config {args.config}, {s}x{s}, width {args.width}, batch {args.batch}, weights {layout}\n")
    print("| phase | median ms |\n|---|---|")
    for k, v in phases.items():
        print(f"| {k} | {statistics.median(v):.0f} |")
    print(f"\nFLOPs per iteration (fwd+bwd, all nets): {flops / 1e9:.1f} GFLOP")
    print(f"matmul throughput of this machine: {gflops:.1f} GFLOP/s -> floor {floor_ms:.0f} ms")
    print(f"measured {total_ms:.0f} ms = {total_ms / floor_ms:.2f}x the floor; "
          f"{args.batch / total_ms * 1000:.1f} img/s")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tr.train_step()
        print("\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(f"peak RSS during an iteration: {peak:.0f} MiB (+{rise:.0f} MiB over the RSS before it)")


if __name__ == "__main__":
    main()
