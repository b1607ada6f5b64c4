"""Segment every photo of a folder with a trained U-Net: masks and RGBA cut-outs.

  python -m training.segment_folder --unet runs/pipeline-cpu/bundle.safetensors --in photos/ --out seg/

Writes <out>/masks/<name>.png (white = foreground) and <out>/cutouts/<name>.png (the photo with the
foreground probability as alpha), mirroring sub-folders. Photos are read one at a time, so folder size
does not matter; photos already done are skipped, so re-running finishes an interrupted job. The masks
are cleaned as the model says (its U-Net's postprocess, e.g. the largest region with holes filled);
--postprocess none writes the raw thresholded masks.
"""

from __future__ import annotations

import argparse
import json
import sys

from elgan.config import UNetConfig
from training._cli import add_knob


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.segment_folder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unet", required=True, help="a bundle holding a 'unet' network")
    p.add_argument("--in", dest="in_dir", required=True, help="folder of photos (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (masks/ and cutouts/)")
    p.add_argument("--input-size", type=int, default=None,
                   help="shorter side fed to the U-Net (default: its training resolution)")
    p.add_argument("--soft", action="store_true",
                   help="write the probability (0-255) instead of a 0/255 mask")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground where probability > this")
    add_knob(p, UNetConfig, "postprocess", unset="the model's own")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved settings and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.threshold < 1:
        parser.error("--threshold must be in (0, 1)")
    if args.input_size is not None and args.input_size < 16:
        parser.error("--input-size must be >= 16")
    if args.dry_run:
        print(json.dumps(vars(args), indent=2, sort_keys=True))
        return 0

    from elgan.bundle import load_unet
    from elgan.checkpoint import CheckpointError
    from elgan.data import DataError
    from elgan.evaluate import segment_folder
    from elgan.train.unet_trainer import resolve_device

    try:
        unet = load_unet(args.unet, resolve_device(args.device))
        report = segment_folder(unet, args.in_dir, args.out, args.input_size, args.soft, args.threshold,
                                progress=not args.no_progress, postprocess=args.postprocess)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, reason in report.failed:
        print(f"skipped unreadable {path}: {reason}", file=sys.stderr)
    print(f"{report.segmented} segmented, {report.skipped} already done, {len(report.failed)} unreadable; "
          f"output in {args.out}")
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
