"""Measure how well a bundle's latent walk reproduces the true move (eq. 7), per direction.

  python -m training.equivariance checkpoints/default.safetensors            # print the table
  python -m training.equivariance checkpoints/default.safetensors --write    # also store it in the bundle
  python -m training.equivariance runs/x/bundle.safetensors --json           # last line: one JSON object

For tx, ty, rotation and scale at eps = +1 (the edge of the training range), over 12 fixed seeds (and
categories spread over the super-categories): the median of |G(z + Phi(eps), c) - T^X G(z, c)| /
|G(z, c) - T^X G(z, c)| (0: the walk makes the move exactly; 1: the walk does nothing), and the mask's
centroid / orientation / size change under the walk and under T^X. The target is met when every ratio is
<= 0.5. --write stores the result in the bundle's metadata ("equivariance"), which the app shows.
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
    args = p.parse_args(argv)
    try:
        model = load_model_bundle(args.bundle)
    except (CheckpointError, FileNotFoundError) as exc:
        p.error(str(exc))
    if model.phi is None:
        p.error(f"{args.bundle}: holds no Phi (the latent walk): not a config-E model")
    result = measure_equivariance(model.generator, model.phi, model.perturb, tuple(range(args.seeds)))
    met = meets_target(result) and args.seeds >= 12
    print(f"{args.bundle}: eps = +1, median over {args.seeds} seeds\n")
    print("| direction | ratio (0 = exact, 1 = no move) | mask move by the walk | by T^X | share of the move |")
    print("|---|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['ratio']:.3f} | {r['walk_move']:+.3f} {UNITS[name]} | {r['true_move']:+.3f} "
              f"{UNITS[name]} | {r['move_share']:.2f} |")
    print(f"\ntarget (every ratio <= 0.5, >= 12 seeds): {'met' if met else 'NOT met'}")
    record = {"eps": 1.0, "seeds": args.seeds, "directions": result, "target_met": met}
    if args.write:
        raw = load_bundle(args.bundle)
        save_bundle(args.bundle, raw.tensors, raw.configs, {**raw.metadata, "equivariance": record})
        print(f"stored in {args.bundle} (metadata 'equivariance')")
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
