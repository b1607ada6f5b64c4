"""Measure how well a bundle's latent walk reproduces the true move (eq. 7), per direction.

  python -m training.equivariance checkpoints/default.safetensors            # print the table
  python -m training.equivariance checkpoints/default.safetensors --write    # also store it in the bundle
  python -m training.equivariance runs/x/bundle.safetensors --json           # last line: one JSON object
  python -m training.equivariance runs/b/last.safetensors --phi-from runs/e/last.safetensors  # a borrowed walk

For tx, ty, rotation and scale at eps = +1 (the edge of the training range), over 12 fixed seeds (and
categories spread over the super-categories): the median of |G(z + Phi(eps), c) - T^X G(z, c)| /
|G(z, c) - T^X G(z, c)| (0: the walk makes the move exactly; 1: the walk does nothing), and the mask's
centroid / orientation / size change under the walk and under T^X. The target is met when every ratio is
<= 0.5. --write stores the result in the bundle's metadata ("equivariance"), which the app shows.
--phi-from measures this file's generator under another file's Phi (and its perturbation ranges): whether a
walk learned with one generator carries over to another (e.g. a config-B model borrowing an E model's walk).
"""

from __future__ import annotations

import argparse
import json
import sys

from elgan.bundle import load_model_bundle
from elgan.checkpoint import CheckpointError, load_bundle, save_bundle
from elgan.equivariance import SEEDS, measure_equivariance, meets_target

UNITS = {"tx": "side", "ty": "side", "rotation": "deg", "scale": "log2"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.equivariance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="a model bundle with a generator and Phi (config E)")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="number of seeds (>= 12 for the target)")
    p.add_argument("--write", action="store_true", help="store the result in the bundle's metadata")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object last")
    p.add_argument("--phi-from", default="", metavar="FILE",
                   help="use this other file's Phi and perturbation ranges with the bundle's generator")
    args = p.parse_args(argv)
    if args.phi_from and args.write:
        p.error("--write stores a file's own walk; it cannot be combined with --phi-from")
    try:
        model = load_model_bundle(args.bundle)
        walker = load_model_bundle(args.phi_from) if args.phi_from else model
    except (CheckpointError, FileNotFoundError) as exc:
        p.error(str(exc))
    if walker.phi is None:
        p.error(f"{walker.path}: holds no Phi (the latent walk): not a config-E model")
    if walker.phi.cfg.z_dim != model.generator.cfg.z_dim:
        p.error(f"{walker.path}: its Phi walks a {walker.phi.cfg.z_dim}-d z, the generator of {args.bundle} "
                f"takes {model.generator.cfg.z_dim}")
    result = measure_equivariance(model.generator, walker.phi, walker.perturb, tuple(range(args.seeds)))
    met = meets_target(result) and args.seeds >= 12
    borrowed = f" with the Phi of {args.phi_from}" if args.phi_from else ""
    print(f"{args.bundle}{borrowed}: eps = +1, median over {args.seeds} seeds\n")
    print("| direction | ratio (0 = exact, 1 = no move) | mask move by the walk | by T^X | share of the move |")
    print("|---|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['ratio']:.3f} | {r['walk_move']:+.3f} {UNITS[name]} | {r['true_move']:+.3f} "
              f"{UNITS[name]} | {r['move_share']:.2f} |")
    print(f"\ntarget (every ratio <= 0.5, >= 12 seeds): {'met' if met else 'NOT met'}")
    record = {"eps": 1.0, "seeds": args.seeds, "directions": result, "target_met": met,
              **({"phi_from": args.phi_from} if args.phi_from else {})}
    if args.write:
        raw = load_bundle(args.bundle)
        save_bundle(args.bundle, raw.tensors, raw.configs, {**raw.metadata, "equivariance": record})
        print(f"stored in {args.bundle} (metadata 'equivariance')")
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
