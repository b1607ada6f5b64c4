"""Score a trained U-Net on a dataset's masks with the paper's protocol (Table 1).

  python -m training.evaluate --unet runs/pipeline-cpu/bundle.safetensors --data synthetic --split test
  python -m training.evaluate --unet runs/unet/best.safetensors --data cub:PATH --split test --json
  python -m training.evaluate --bundle checkpoints/default.safetensors --method inversion --limit 100

--method inversion scores segmentation by inversion instead (elgan/invert.py): each test image is
inverted into the bundle's generator and G's own mask is the prediction -- no U-Net, no training beyond
the GAN; the bundle needs a generator (its discriminator, when present, proposes the start categories).
It costs seconds per image, so --limit is useful; the seconds per image are printed with the scores.

Images and masks are resized (shorter side) and centre-cropped to --size (128, as the literature); a
U-Net trained at a lower resolution sees the image at its own size and its probability is upsampled to
--size before the 0.5 threshold, and the mask is cleaned as the model says (its U-Net's postprocess;
--postprocess overrides it). With --json the LAST line printed is one JSON object
{"acc": ..., "iou": ..., "miou": ..., "n": ..., "method": ..., "seconds_per_image": ...}, metrics in [0, 1].
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from elgan.config import UNetConfig
from elgan.metrics import CONVENTIONS, error_shares, mask_areas
from training._cli import add_knob


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unet", "--bundle", dest="bundle", required=True,
                   help="a bundle holding a 'unet' network (pipeline bundle or U-Net checkpoint); with "
                   "--method inversion, one holding a generator")
    p.add_argument("--method", choices=("unet", "inversion"), default="unet",
                   help="unet: the bundle's U-Net (default); inversion: G's mask of each inverted image")
    p.add_argument("--steps", type=int, default=None, help="inversion: joint steps (default: InversionConfig's)")
    p.add_argument("--seed", type=int, default=0, help="inversion: seed of the starts")
    p.add_argument("--data", default="synthetic", help="synthetic | cub:PATH | folder:PATH | lsun:PATH")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--convention", choices=CONVENTIONS, default="dataset",
                   help="dataset: one confusion matrix over all pixels (default); per_image: averaged")
    p.add_argument("--size", type=int, default=128, help="evaluation resolution (default 128, the paper's)")
    p.add_argument("--input-size", type=int, default=None,
                   help="resolution fed to the U-Net (default: the one stored in the bundle)")
    add_knob(p, UNetConfig, "postprocess", unset="the model's own")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="score only the first N images of the split")
    p.add_argument("--per-image", default="", help="also write per-image IoU to this CSV file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the scores")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size < 16 or args.batch < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--size must be >= 16, --batch >= 1 and --limit >= 1")
    if args.input_size is not None and args.input_size < 16:
        parser.error("--input-size must be >= 16")
    if args.steps is not None and args.steps < 0:
        parser.error("--steps must be >= 0")

    import time
    from dataclasses import replace

    from elgan.bundle import load_model_bundle, load_unet
    from elgan.checkpoint import CheckpointError
    from elgan.data import DataError
    from elgan.evaluate import evaluate_inversion_detailed, evaluate_unet_detailed
    from elgan.invert import InversionConfig
    from elgan.train.unet_trainer import resolve_device

    t0 = time.perf_counter()
    try:
        device = resolve_device(args.device)
        if args.method == "inversion":
            bundle = load_model_bundle(args.bundle, device)
            cfg = InversionConfig(seed=args.seed)
            cfg = replace(cfg, steps=args.steps) if args.steps is not None else cfg
            result, per_image_s = evaluate_inversion_detailed(
                bundle.generator, args.data, args.split, args.size, args.convention, args.limit, cfg,
                bundle.discriminator, progress=args.progress)
            how = f"inversion into the {bundle.size} px generator"
        else:
            unet = load_unet(args.bundle, device)
            result = evaluate_unet_detailed(unet, args.data, args.split, args.size, args.convention, args.batch,
                                            args.input_size, args.limit, args.progress, args.postprocess)
            per_image_s = (time.perf_counter() - t0) / max(1, result.scores.n)
            how = (f"U-Net input {args.input_size or unet.input_size or args.size}, mask cleaning "
                   f"{args.postprocess or unet.cfg.postprocess}")
    except (CheckpointError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = result.scores
    print(f"{args.data} [{args.split}], {s.n} images at {args.size}x{args.size}, {how}, {s.convention} "
          f"convention: ACC {100 * s.acc:.1f}  IoU {100 * s.iou:.1f}  mIoU {100 * s.miou:.1f}  "
          f"({per_image_s:.3f} s/image)")
    e = error_shares(result.counts)
    print(f"mask area predicted {e['pred_area']:.3f}, true {e['true_area']:.3f}; false foreground "
          f"{e['false_fg']:.3f} and missed foreground {e['missed_fg']:.3f} of the true foreground; "
          f"{int((result.per_image_iou < 0.3).sum())} of {s.n} images below IoU 0.3")
    if args.per_image:
        with open(args.per_image, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "path", "iou", "pred_area", "true_area"])
            areas = mask_areas(result.counts).tolist()
            ious = result.per_image_iou.tolist()
            for i, (iou, (pred_area, true_area)) in enumerate(zip(ious, areas, strict=True)):
                writer.writerow([i, result.paths[i] if result.paths else "", f"{iou:.6f}",
                                 f"{pred_area:.4f}", f"{true_area:.4f}"])
        print(f"per-image IoU written to {args.per_image}")
    if args.json:
        # exactly the documented contract; method and timing are on the human-readable line above
        print(json.dumps({"acc": s.acc, "iou": s.iou, "miou": s.miou, "n": s.n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
