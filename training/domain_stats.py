"""Statistics of a model's training images for the app's "unlike the training images" warning, measured.

  python -m training.domain_stats checkpoints/default.safetensors --data synthetic --limit 2000 \\
      --against folder:../shared/data/weizmann_horse                     # measure only
  python -m training.domain_stats checkpoints/horse.safetensors --data folder:../shared/data/weizmann_horse \\
      --against synthetic --write                                        # measure, then store in the bundle

Embeds the training images (``--data``, the model's ``train`` split; ``--limit`` keeps the first N) with the
frozen ImageNet EfficientNet-Lite0 and fits elgan.domain's statistics (mean, top principal directions and
their variances, residual). In-domain distances are measured on images the statistics never saw: the
``test`` split where the data has one (synthetic, cub), else by k-fold cross-validation over the training
images (a folder of photos has no split). The warning threshold is the ``--quantile`` of those held-out
distances; its false-warning rate is cross-validated (each fold judged by the other folds' threshold), and
each ``--against`` data set (out of domain) gives the share of its images the warning misses. With
``--write`` the statistics (fitted on all the training images) and the threshold go into the bundle's
``domain`` entry, the numbers into its metadata (``domain``), every other tensor, config and metadata key
unchanged; ``--trained-on`` / ``--use`` set the plain words the app shows (metadata ``about``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch

QUANTILES = (0.95, 0.99)


def _rates(d_in: np.ndarray, outside: dict[str, np.ndarray], quantile: float, folds: int) -> dict[str, Any]:
    from elgan.domain import auroc, choose_threshold, cross_validated_false_warnings, error_rates

    threshold = choose_threshold(d_in, quantile)
    row: dict[str, Any] = {"quantile": quantile, "threshold": threshold,
                           "false_warnings": error_rates(threshold, d_in, [])[0],
                           "false_warnings_cv": cross_validated_false_warnings(d_in, quantile, folds)}
    row["against"] = {name: {"missed": error_rates(threshold, [], d)[1], "auroc": auroc(d_in, d)}
                      for name, d in outside.items()}
    return row


def _held_out(train: torch.Tensor, spec: str, size: int, args: argparse.Namespace) -> tuple[Any, np.ndarray, str]:
    """(statistics fitted on every training image, held-out in-domain distances, how they were held out)."""
    from elgan.data import load_dataset, parse_spec
    from elgan.domain import embed, fit_stats

    stats = fit_stats(train, size, args.components)
    if parse_spec(spec)[0] in ("synthetic", "cub"):
        held = load_dataset(spec, "test", size, with_masks=False, limit=args.heldout_limit).images
        print(f"held out: {held.shape[0]} images of {spec} [test]", flush=True)
        return stats, stats.distance(embed(held, progress=args.progress)).numpy(), f"test split ({held.shape[0]})"
    order = np.random.default_rng(0).permutation(train.shape[0])
    d_in = np.zeros(train.shape[0])
    for f in range(args.folds):
        held = order[f::args.folds]
        rest = torch.from_numpy(np.setdiff1d(order, held))
        d_in[held] = fit_stats(train[rest], size, args.components).distance(train[torch.from_numpy(held)]).numpy()
    return stats, d_in, f"{args.folds}-fold cross-validation over the {train.shape[0]} training images"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.domain_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="model bundle (.safetensors) whose training images are described")
    p.add_argument("--data", default=None, help="its training data spec (default: the bundle's metadata 'data')")
    p.add_argument("--limit", type=int, default=None, help="use the first N training images")
    p.add_argument("--heldout-limit", type=int, default=1000, help="held-out test images (synthetic, cub)")
    p.add_argument("--against", action="append", default=[], help="an out-of-domain data spec (repeatable)")
    p.add_argument("--against-limit", type=int, default=1000, help="images per --against set")
    p.add_argument("--components", type=int, default=32, help="principal directions kept (32: 170 KB)")
    p.add_argument("--quantile", type=float, default=0.99, help="of held-out in-domain distances: the threshold")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--write", action="store_true", help="store statistics and threshold in the bundle")
    p.add_argument("--trained-on", default=None, help="with --write: plain words for what the model learnt from")
    p.add_argument("--use", default=None, help="with --write: plain words for what the model is for")
    p.add_argument("--json", action="store_true", help="print the measurements as one JSON object last")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    if not 0 < args.quantile < 1 or args.components < 1 or args.folds < 2:
        p.error("--quantile must be in (0, 1), --components >= 1, --folds >= 2")
    torch.set_num_threads(max(1, args.threads))

    from elgan.bundle import load_model_bundle
    from elgan.checkpoint import CheckpointError, load_bundle, save_bundle
    from elgan.data import DataError, load_dataset
    from elgan.domain import ENTRY, FEATURE, DomainError, embed

    try:
        model = load_model_bundle(args.bundle)
        spec = args.data or model.metadata.get("data")
        if not isinstance(spec, str) or not spec:
            p.error(f"{args.bundle} does not record its training data: pass --data")
        size = model.generator.cfg.size
        images = load_dataset(spec, "train", size, with_masks=False, limit=args.limit).images
        print(f"training images: {images.shape[0]} of {spec} at {size} px", flush=True)
        train = embed(images, progress=args.progress)
        stats, d_in, how = _held_out(train, spec, size, args)
        outside = {}
        for other in args.against:
            imgs = load_dataset(other, "test", size, with_masks=False, limit=args.against_limit).images
            print(f"out of domain: {imgs.shape[0]} images of {other}", flush=True)
            outside[other] = stats.distance(embed(imgs, progress=args.progress)).numpy()
    except (CheckpointError, DataError, DomainError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    pct = {f"p{q}": float(np.percentile(d_in, q)) for q in (50, 90, 95, 99)}
    print(f"\n{args.bundle}: in-domain held out by {how}; distances median {pct['p50']:.3f}, 95th "
          f"{pct['p95']:.3f}, 99th {pct['p99']:.3f}, max {d_in.max():.3f}")
    for name, d in outside.items():
        print(f"  {name}: {d.size} images, distances min {d.min():.3f}, median {np.median(d):.3f}")
    rows = [_rates(d_in, outside, q, args.folds) for q in sorted({*QUANTILES, args.quantile})]
    print("\n| threshold at | distance | false warnings (in-domain, cross-validated) | "
          + " | ".join(f"missed: {n}" for n in outside) + " |")
    print("|---|---|---|" + "---|" * len(outside))
    for r in rows:
        print(f"| {100 * r['quantile']:g}th percentile | {r['threshold']:.3f} | {100 * r['false_warnings_cv']:.1f}% | "
              + " | ".join(f"{100 * a['missed']:.1f}% (AUROC {a['auroc']:.3f})" for a in r["against"].values()) + " |")
    chosen = next(r for r in rows if r["quantile"] == args.quantile)
    record = {"feature": FEATURE, "data": spec, "n": int(images.shape[0]), "components": args.components,
              "size": size, "held_out": how, "quantile": args.quantile, "threshold": chosen["threshold"],
              "in_domain_percentiles": pct, "false_warnings_cv": chosen["false_warnings_cv"],
              "against": {n: {"n": int(d.size), **chosen["against"][n]} for n, d in outside.items()}}
    print(f"\nthreshold: {chosen['threshold']:.3f} ({100 * args.quantile:g}th percentile of held-out in-domain)")
    if args.write:
        raw = load_bundle(args.bundle)
        tensors = {**raw.tensors, ENTRY: stats.with_threshold(chosen["threshold"]).tensors()}
        meta = {**raw.metadata, "domain": record}
        if args.trained_on or args.use:
            about = dict(raw.metadata.get("about") or {})
            about.update({k: v for k, v in (("trained_on", args.trained_on), ("use", args.use)) if v})
            meta["about"] = about
        save_bundle(args.bundle, tensors, raw.configs, meta)  # no `half`: every tensor keeps its dtype
        print(f"stored in {args.bundle} (entry {ENTRY!r}, metadata 'domain')")
    if args.json:
        print(json.dumps({**record, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
