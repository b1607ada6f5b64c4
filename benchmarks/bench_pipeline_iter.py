"""Milliseconds per GAN iteration of a pipeline preset, with its overrides, on this machine's device.

  python benchmarks/bench_pipeline_iter.py --preset horse128 --data folder:PHOTOS --set gan_width=12 \
      --set gan_d_width=32 --set precision=fp32 [--iters 20] [--json]

A time-boxed run (``scripts/device_128.sh``) sizes its iteration count from this number, so that the
equivariance ramp-up, which the pipeline ties to the iteration count, ends where the paper puts it
rather than wherever the wall-time cap happens to stop the run. Builds the run's real GanTrainer
(data, nets, losses; a 1-step RotNet stands in for the perceptual net, same architecture) and times
whole ``train_step`` calls, CUDA synchronised. Started beside the other runs of a shared GPU, it
measures the contended speed those runs will see.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from elgan.config import default_of, replace  # noqa: E402
from elgan.pipeline import PRESET_KNOBS, PRESETS, SPECS, pipeline_config  # noqa: E402
from elgan.train.gan_trainer import GanTrainer  # noqa: E402


def parse_override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or key not in SPECS["cpu"]._fields:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with FIELD one of {SPECS['cpu']._fields}, "
                                         f"got {text!r}")
    kind = type(default_of(*PRESET_KNOBS[key]))  # the knob's type (gan_d_width is None, "unset", in the presets)
    return key, kind(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="cpu")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--set", type=parse_override, action="append", default=[], metavar="FIELD=VALUE",
                   help="a pipeline override, as training.pipeline's --FIELD flag (repeatable)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first (cuDNN's algorithm search)")
    p.add_argument("--json", action="store_true", help="print one JSON line only")
    args = p.parse_args()
    if args.iters < 1 or args.warmup < 0:
        p.error("--iters must be >= 1 and --warmup >= 0")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(pipeline_config(args.preset, args.data, out=tmp, **dict(args.set)).gan, rotnet_iters=1)
        tr = GanTrainer(cfg, tmp, progress=False)
        sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
        for _ in range(args.warmup):
            tr.train_step()
        times = []
        for _ in range(args.iters):
            sync()
            t0 = time.perf_counter()
            tr.train_step()
            sync()
            times.append((time.perf_counter() - t0) * 1000)
    result = {"preset": args.preset, "data": args.data, "overrides": dict(args.set), "device": str(tr.device),
              "ms_median": round(statistics.median(times), 2), "ms_mean": round(statistics.fmean(times), 2),
              "iters": args.iters}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.preset} {dict(args.set)} on {tr.device}: median {result['ms_median']} ms per iteration "
              f"(mean {result['ms_mean']}, {args.iters} iterations)")


if __name__ == "__main__":
    main()
