"""Score several segmenters and the trivial baselines on one dataset in one table (128² protocol).

  python -m training.compare --data folder:../shared/data/weizmann_horse \
      --model "ELGAN (E), horse preset=checkpoints/horse.safetensors" \
      --model "config A, same budget=runs/horse-A/bundle.safetensors" \
      --model "embedded-data model (domain gap)=checkpoints/default.safetensors" \
      --model "supervised U-Net (true masks)=runs/horse-supervised/best.safetensors" --baselines

Each --model is LABEL=BUNDLE (any bundle holding a 'unet'). Rows: dataset-level ACC / IoU / mIoU (the
paper's convention), the mean per-image IoU, and the number of images. --json writes the rows too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="data spec with masks: synthetic | folder:PATH | cub:PATH")
    p.add_argument("--split", default="test")
    p.add_argument("--size", type=int, default=128, help="evaluation resolution (the literature's 128)")
    p.add_argument("--model", action="append", default=[], help="LABEL=BUNDLE (repeatable)")
    p.add_argument("--baselines", action="store_true", help="add the centred ellipse and 2-means rows")
    p.add_argument("--limit", type=int, default=0, help="score only the first N images (0: all)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    return p


def _row(label: str, dataset: dict, per_image_iou: float, n: int) -> dict:
    return {"method": label, "acc": dataset["acc"], "iou": dataset["iou"], "miou": dataset["miou"],
            "per_image_iou": per_image_iou, "n": n}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    models = []
    for spec in args.model:
        label, sep, path = spec.rpartition("=")
        if not sep or not label.strip() or not path.strip():
            parser.error(f"--model takes LABEL=BUNDLE, got {spec!r}")
        models.append((label.strip(), path.strip()))
    if not models and not args.baselines:
        parser.error("nothing to score: give --model LABEL=BUNDLE and/or --baselines")
    if args.size < 16 or args.limit < 0:
        parser.error("--size must be >= 16 and --limit >= 0")

    from elgan.baselines import baseline_scores
    from elgan.bundle import load_unet
    from elgan.checkpoint import CheckpointError
    from elgan.data import DataError, load_dataset
    from elgan.evaluate import evaluate_unet_detailed

    rows = []
    try:
        if args.baselines:
            data = load_dataset(args.data, args.split, args.size, with_masks=True, limit=args.limit or None)
            dataset = baseline_scores(data.images, data.masks, convention="dataset")
            per_image = baseline_scores(data.images, data.masks, convention="per_image")
            for key, label in (("centred_ellipse", "centred ellipse (trivial)"), ("kmeans", "2-means colour, "
                                                                                        "better polarity (trivial)")):
                rows.append(_row(label, dataset[key].as_dict(), per_image[key].iou, len(data.images)))
        for label, path in models:
            unet = load_unet(path)
            ev = evaluate_unet_detailed(unet, args.data, args.split, args.size, "dataset", limit=args.limit or None)
            rows.append(_row(label, ev.scores.as_dict(), float(ev.per_image_iou.mean()), int(ev.scores.n)))
    except (DataError, CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.data} [{args.split}], {args.size}² protocol (resize shorter side, centre crop), "
          f"dataset-level ACC / IoU / mIoU\n")
    print("| method | ACC | IoU | mIoU | per-image IoU | n |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {100 * r['acc']:.1f} | {100 * r['iou']:.1f} | {100 * r['miou']:.1f} | "
              f"{100 * r['per_image_iou']:.1f} | {r['n']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "split": args.split, "size": args.size,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
