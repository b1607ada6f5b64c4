"""Can the latent walk be learned at all? Fit Phi (and optionally G) to eq. (8) alone, without the GAN.

  python scripts/phi_fit.py --bundle checkpoints/default.safetensors --lr 2e-3             # Phi only, frozen G
  python scripts/phi_fit.py --bundle RUN/last.safetensors --rotnet RUN/rotnet.safetensors \\
      --train-g --relative --gain 10 --reg 0 --moment-reg known                              # G and Phi, no D

Each step: codes z, c, eps; the target T^X G(z, c) (detached, as in training); the loss
0.5 * L_equi(G(z + Phi(eps), c), target) + reg * L_reg. Every 50 steps one JSON line (losses, the
walk's length per direction at eps = unit vector, mean mask area); at the end the ratio table of
``python -m training.equivariance`` as one JSON line. A diagnostic: nothing is saved.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from elgan import losses  # noqa: E402
from elgan.bundle import load_model_bundle  # noqa: E402
from elgan.equivariance import measure_equivariance  # noqa: E402
from elgan.nets.features import pretrained_lite0  # noqa: E402
from elgan.nets.generator import compose  # noqa: E402
from elgan.nets.phi import LatentTransform  # noqa: E402
from elgan.perturb import eps_to_params, sample_eps, transform_layers  # noqa: E402
from elgan.train.rotnet_trainer import load_feature_net  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="checkpoints/default.safetensors", help="model or GAN bundle with Phi")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--reg", type=float, default=1.0, help="weight of the moment regulariser")
    p.add_argument("--moment-reg", choices=("batch", "known"), default="batch")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train-g", action="store_true", help="train G as well (eq. 8 only: no adversarial term)")
    p.add_argument("--gain", type=float, default=1.0, help="Phi output gain (!= 1: a fresh Phi)")
    p.add_argument("--relative", action="store_true", help="the relative form of eq. (8)")
    p.add_argument("--rotnet", default="", help="perceptual net file; default: ImageNet Lite0")
    p.add_argument("--lite0-size", type=int, default=64, help="Lite0 reads images resized to this side")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_model_bundle(a.bundle)
    G, phi, pc = model.generator, model.phi, model.perturb
    if a.gain != 1.0:
        phi = LatentTransform(dataclasses.replace(phi.cfg, gain=a.gain))
    for q in G.parameters():
        q.requires_grad_(a.train_g)
    G.eval()
    if a.rotnet:
        pyramid = load_feature_net(a.rotnet, torch.device("cpu")).pyramid
    else:
        net = pretrained_lite0(torch.device("cpu"))

        def pyramid(x: torch.Tensor) -> list[torch.Tensor]:
            return net.pyramid(F.interpolate(x, size=a.lite0_size, mode="bilinear", antialias=True))

    params = list(phi.parameters()) + (list(G.parameters()) if a.train_g else [])
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.5, 0.999))
    t0 = time.time()
    for step in range(a.steps + 1):
        z, c = G.sample_codes(a.batch, device="cpu")
        eps = sample_eps(a.batch, pc)
        base = G(z, c)
        fg, mask = transform_layers(base.foreground, base.mask, eps_to_params(eps, pc))
        target = compose(base.background, fg, mask).detach()
        z_walked = phi(z, eps)
        equi = losses.equivariance_loss(pyramid, G(z_walked, c).image, target, base.image if a.relative else None)
        reg = (losses.moment_regularizer_known(z, z_walked) if a.moment_reg == "known"
               else losses.moment_regularizer(z_walked))
        opt.zero_grad()
        (0.5 * equi + a.reg * reg).backward()
        opt.step()
        if step % 50 == 0:
            lengths = phi.shift(torch.eye(pc.eps_dim)).norm(dim=1).tolist()
            print(json.dumps({"step": step, "equi": round(equi.item(), 4), "reg": round(reg.item(), 4),
                              "walk_length": [round(v, 3) for v in lengths], "mask_area":
                              round(base.mask.mean().item(), 3), "s": round(time.time() - t0, 1)}), flush=True)
    result = measure_equivariance(G, phi, pc)
    print(json.dumps({k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in result.items()}), flush=True)


if __name__ == "__main__":
    main()
