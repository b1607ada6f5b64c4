"""Does eq. (8)'s gradient through its *target* T^X G(z, c) push the mask toward empty?

  python scripts/equi_target_gradient.py checkpoints/default.safetensors checkpoints/horse.safetensors \
      [--batches 8] [--batch 16] [--threads 2]

The equivariance loss compares G(z + Phi(eps), c) with T^X G(z, c). If gradients flow through both
sides, G can lower it by changing the target: an empty mask makes the transformed target equal to G's
own background, which a walked image can match without moving anything -- the trivial zero. This
script measures, on trained generators in train mode (as in a G step), the cosine between the descent
direction of each path and the gradient of the mean mask area, over the generator's parameters:

  target path  -grad L(G(z + Phi(eps)).detach(), T^X G(z))   (only the target moves)
  walked path  -grad L(G(z + Phi(eps)), T^X G(z).detach())   (the detached default)

A negative cosine means a descent step on that path shrinks the mask. Perceptual net: the frozen
ImageNet EfficientNet-Lite0 (the bundles hold no RotNet). Prints a Markdown table, mean +- std over
batches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from elgan import losses  # noqa: E402
from elgan.bundle import load_model_bundle  # noqa: E402
from elgan.nets.features import pretrained_lite0  # noqa: E402
from elgan.nets.generator import compose  # noqa: E402
from elgan.perturb import eps_to_params, sample_eps, transform_layers  # noqa: E402


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params,
                                                                                                strict=True)])


def cosines(path: str, batches: int, batch: int, seed: int) -> dict[str, list[float]]:
    model = load_model_bundle(path)
    if model.phi is None:
        raise SystemExit(f"{path}: no Phi (not a config-E bundle)")
    G, phi, perturb = model.generator.train(), model.phi.train(), model.perturb
    params = [p for p in G.parameters() if p.requires_grad]
    pyramid = pretrained_lite0().pyramid
    rng = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"target": [], "walked": []}
    for _ in range(batches):
        z, c = G.sample_codes(batch, rng)
        eps = sample_eps(batch, perturb, rng)
        with torch.no_grad():
            z_walked = phi(z, eps)
        both = G(torch.cat([z, z_walked]), torch.cat([c, c]))
        layers = [t[:batch] for t in both]
        walked = both.image[batch:]
        fg, mask = transform_layers(layers[1], layers[2], eps_to_params(eps, perturb))
        target = compose(layers[0], fg, mask)
        area = flat_grad(layers[2].mean(), params)
        for name, (a, b) in {"target": (walked.detach(), target), "walked": (walked, target.detach())}.items():
            g = flat_grad(losses.equivariance_loss(pyramid, a, b), params)
            out[name].append(float(torch.nn.functional.cosine_similarity(-g, area, dim=0)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"cosine(descent direction, d mask area / d theta), {args.batches} batches of {args.batch}\n")
    print("| bundle | target path (not detached) | walked path (detached default) |\n|---|---|---|")
    for path in args.bundles:
        r = cosines(path, args.batches, args.batch, args.seed)
        cells = [f"{statistics.mean(v):+.3f} ± {statistics.stdev(v):.3f}" for v in (r["target"], r["walked"])]
        print(f"| {Path(path).name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
