"""Invert a photo into a trained layered GAN: its codes (z, c), its layers, and an edit of it.

  python -m training.invert --bundle checkpoints/default.safetensors --image photo.jpg --out runs/invert
  python -m training.invert --bundle B --image photo.png --out DIR --steps 80 --seed 1 --edit tx=1,rotation=-1

Writes DIR/<stem>.png, one strip: original (the square crop the generator sees) | reconstruction |
background | foreground | mask | the edit by the latent walk G(z + Phi(eps), c') | the same edit done on
the layers, T_eps^X G(z, c') (default eps tx=+1: an eighth of the side to the right; the two agree when
Phi learned its direction), and DIR/<stem>.json: codes (z, c, c_sup), distances, steps, seconds, the
settings used.
Exit status 0, or 2 when the bundle or the image cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def parse_eps(text: str) -> dict[str, float]:
    """'tx=1,rotation=-0.5' -> {'tx': 1.0, 'rotation': -0.5}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--edit wants name=value pairs, got {part!r}")
        out[name.strip()] = float(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.invert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="a bundle with a generator (and ideally phi, discriminator)")
    p.add_argument("--image", required=True, help="the photo (any size / mode; centre-cropped to a square)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=None,
                   help="joint search steps on z and c (default: InversionConfig's); z-only refinement comes on top")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--edit", default="tx=1", help="eps of the edit panel: tx, ty, rotation, scale in [-3, 3]")
    p.add_argument("--c", type=int, default=None, help="category of the edit panel (default: the inverted c)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        eps = parse_eps(args.edit)
    except ValueError as exc:
        parser.error(str(exc))
    if args.steps is not None and args.steps < 0:
        parser.error("--steps must be >= 0")

    from elgan import invert as photo
    from elgan.bundle import load_model_bundle
    from elgan.checkpoint import CheckpointError
    from elgan.data import DataError, load_image
    from elgan.equivariance import EditError, edit, move_layers
    from elgan.train.unet_trainer import resolve_device
    from elgan.visualize import caption_strip, save_png, view

    try:
        model = load_model_bundle(args.bundle, resolve_device(args.device))
        image = load_image(args.image)
        original, result = photo.invert_photo(model, image, args.steps, args.seed)
        c_edit = result.c if args.c is None else args.c
        edited = edit(model, result.z, c_edit, eps).image
        moved = move_layers(model, result.z, c_edit, eps)
    except (CheckpointError, DataError, FileNotFoundError, EditError, photo.InversionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    views = photo.result_views(original, result, target=2 * model.size)
    what = ", ".join(f"{k}{v:+g}" for k, v in eps.items() if v) or "none"
    what += f", c={c_edit}" if c_edit != result.c else ""
    names = ["original", "reconstruction", "background", "foreground", "mask"]
    panels = [views[n] for n in names] + [view(edited, 2 * model.size), view(moved, 2 * model.size)]
    strip = caption_strip(panels, names + [f"Phi walk {what}", f"layers moved {what}"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    save_png(strip, out / f"{stem}.png")
    report = {"image": str(args.image), "bundle": str(args.bundle), **result.codes(),
              "distances": result.distances, "poor": photo.is_poor(result), "steps": result.steps,
              "search_steps": result.search_steps, "refine_steps": result.refine_steps,
              "seconds": result.seconds, "start_categories": result.start_categories,
              "edit": {"eps": eps, "c": c_edit, "walk_vs_moved_mae": float((edited - moved).abs().mean())},
              "panels": names + ["edit: G(z + Phi(eps), c)", "edit: T_eps^X G(z, c) (layers moved)"],
              "config": asdict(result.config)}
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    d = result.distances
    print(f"{stem}: c={result.c} c_sup={result.c_sup}, explains {100 * d['explained']:.0f}% of the variation, "
          f"pixel error {d['pixel_mae']:.3f}{' (POOR)' if photo.is_poor(result) else ''}, "
          f"perceptual {d['perceptual']:.3f}, "
          f"{photo.steps_text(result)} in {result.seconds:.1f} s -> {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
