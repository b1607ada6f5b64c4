"""The paper's Fig. 6 and Fig. 7 of a trained model, as PNG files (the README's and model cards' figures).

  python -m training.figures --gan checkpoints/default.safetensors --out docs/figures
  python -m training.figures --gan runs/p/bundle.safetensors --out figs --seed 3 --c 42 --n 8 --frames 9

Writes OUT/fig6_vary_z.png, OUT/fig6_vary_c.png (c within its super-category: the mask keeps its shape),
OUT/fig6_vary_csup.png (rows: background | foreground | mask | image), and for each direction the model
was trained with, OUT/fig7_<direction>.png: G(z + Phi(t e), c) for t from -LIMIT to +LIMIT over the top row,
the layers moved by T^X_t under it, a green bar under frames inside the training range |t| <= 1.
The same seed and c give the same files. Exit status 0, or 2 when the bundle cannot be read or the
request is refused (a model without Phi still gets its Fig. 6).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODES = {"vary_z": 0, "vary_c": 1, "vary_csup": 2}  # file name -> index into elgan.figures.GRID_MODES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gan", required=True, help="model bundle or GAN checkpoint (generator, and phi for Fig. 7)")
    p.add_argument("--out", required=True, help="folder for the PNG files")
    p.add_argument("--seed", type=int, default=0, help="latent code of the figures (Fig. 6 z grid: seed, seed+1, ...)")
    p.add_argument("--c", type=int, default=0, help="category c of the figures")
    p.add_argument("--n", type=int, default=8, help="samples per Fig. 6 grid (1-16)")
    p.add_argument("--frames", type=int, default=9, help="frames per Fig. 7 strip (2-16)")
    p.add_argument("--limit", type=float, default=3.0, help="Fig. 7's largest |t| (training covered 1; at most 3)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from elgan import figures
    from elgan.bundle import load_model_bundle
    from elgan.checkpoint import CheckpointError
    from elgan.equivariance import EditError
    from elgan.train.unet_trainer import resolve_device
    from elgan.visualize import save_png

    out = Path(args.out)
    try:
        model = load_model_bundle(args.gan, resolve_device(args.device))  # networks in eval mode
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, mode in MODES.items():
            image = figures.variation_grid(model, args.seed, args.c, figures.GRID_MODES[mode], args.n)
            save_png(image, out / f"fig6_{name}.png")
            written.append(f"fig6_{name}.png")
        if model.phi is not None:
            z = figures.code_from_seed(model.generator.cfg.z_dim, args.seed)
            for direction in model.perturb.eps_names:
                strip, _ = figures.direction_strip(model, z, args.c, direction, args.frames, args.limit)
                save_png(strip, out / f"fig7_{direction}.png")
                written.append(f"fig7_{direction}.png")
    except (CheckpointError, OSError, EditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(written)} to {out} (seed {args.seed}, c {args.c})"
          + ("" if model.phi is not None else "; no Phi in this model: no Fig. 7"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
