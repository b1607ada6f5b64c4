"""Table 3 of the paper on one dataset: configurations A-E and the two collapse demonstrations, each a full
pipeline (GAN -> U-Net on its pairs -> evaluation) with the same budget, seed and perceptual net.

Variants (each adds one ingredient to the previous, as in the paper):
  A            translation perturbation + PerturbGAN's mask-size loss (no code recovery)
  B            translation + private-code recovery (no mask-size loss)
  C            B + scale perturbation
  D            C + rotation perturbation
  E            D + equivariance loss (ELGAN)
  no-recovery  translation only, neither recovery nor mask-size loss: the paper's all-background collapse
  no-perturb   recovery without any perturbation: the paper's all-foreground collapse

Checkpoints are selected by FD-Lite0 by default, in pretrained features that are the same for every
row. Where a run needs a RotNet (config E's perceptual net, or ``fd_net rotnet``) its pipeline's
features stage takes it from OUT/feature_cache (the cache beside the variants' folders): trained once,
by the first run that needs it, for every variant and for later invocations on the same folder, so
that all rows share one perceptual net.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .config import ABLATIONS, ConfigError, GanTrainConfig, ablation, from_dict, replace, to_dict
from .pipeline import PipelineConfig, pipeline_config, run_pipeline
from .train.runlog import read_records

COLLAPSE_VARIANTS = ("no-recovery", "no-perturb")
VARIANTS = (*ABLATIONS, *COLLAPSE_VARIANTS)


def variant_gan(base: GanTrainConfig, name: str) -> GanTrainConfig:
    """`base` with the perturbation and losses of variant `name` (schedules and sizes kept)."""
    if name not in VARIANTS:
        raise ConfigError(f"ablation variant must be one of {VARIANTS}, got {name!r}")
    table_name = {"no-recovery": "A", "no-perturb": "B"}.get(name, name)
    perturb, loss = ablation(table_name)
    if name == "no-recovery":
        loss = replace(loss, mask_size=False)
    if name == "no-perturb":
        perturb = replace(perturb, translate=False, scale=False, rotate=False)
    loss = replace(loss, **{k: getattr(base.loss, k) for k in ("equi_rampup_iters", "gamma_r", "gamma_b",
                                                               "gamma_equi", "gamma_reg", "gamma_size",
                                                               "mask_size_eta")})
    phi = replace(base.phi, eps_dim=perturb.eps_dim)  # Phi only acts in the equivariance loss (E)
    return replace(base, ablation=table_name, perturb=perturb, loss=loss, phi=phi)


def variant_config(name: str, out: Path, data: str = "synthetic", **overrides: Any) -> PipelineConfig:
    """The pipeline of one variant: the cpu preset with `overrides` (size, iterations, ...)."""
    base = pipeline_config("cpu", data, out=str(out / name), **overrides)
    return replace(base, gan=variant_gan(base.gan, name))


class VariantResult(NamedTuple):
    name: str
    steps: int  # GAN iterations trained
    fd: float | None  # best (lowest) FD of the run (FD-Lite0 by default): the model the U-Net learned from
    iou: float | None  # U-Net on the evaluation split (dataset-level)
    acc: float | None
    miou: float | None
    final_mask_area: float | None  # mean generated mask area at the last logged step
    wall_s: float  # RotNet (where this variant trained it) + GAN + U-Net + evaluation seconds


def run_ablation(out: str | Path, variants: tuple[str, ...] = VARIANTS, data: str = "synthetic",
                 progress: bool = True, log: Callable[[str], None] = print,
                 **overrides: Any) -> list[VariantResult]:
    """Run (or resume) every variant in out/<name>; finished variants are read back, not retrained."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in variants:
        cfg = variant_config(name, out, data, **overrides)
        run = Path(cfg.out)
        resume = (run / "config.json").exists()
        if resume and _saved(run) != json.loads(json.dumps(to_dict(cfg))):
            raise ConfigError(f"{run} was run with other settings; use another --out or the same flags")
        log(f"== variant {name} ({'resume' if resume else 'start'}) -> {run}")
        res = run_pipeline(cfg, run, resume=resume, progress=progress, log=log)
        results.append(read_result(name, run, res.wall_s))
    return results


def _saved(run: Path) -> dict[str, Any]:
    """A variant's saved config as it reads today: knobs added since it was written take their defaults."""
    return json.loads(json.dumps(to_dict(from_dict(PipelineConfig, json.loads((run / "config.json").read_text())))))


def mask_area_curve(run: str | Path) -> tuple[list[int], list[float]]:
    """(steps, mean generated mask area) from a pipeline run's GAN log."""
    records = [r for r in read_records(Path(run) / "gan" / "log.jsonl") if "mask_area" in r]
    steps = [int(r["step"]) for r in records]
    areas = [float(r["mask_area"]) for r in records]
    return steps, areas


def read_result(name: str, run: Path, wall_s: dict[str, float]) -> VariantResult:
    gan = json.loads((run / "gan" / "DONE").read_text())
    ev = json.loads((run / "eval.json").read_text())
    scores = ev.get("scores") or {}
    _, areas = mask_area_curve(run)
    return VariantResult(name, int(gan["steps"]), gan.get("best_fd"), scores.get("iou"), scores.get("acc"),
                         scores.get("miou"), areas[-1] if areas else None,
                         sum(v for k, v in wall_s.items() if k != "bundle"))


def markdown_table(results: list[VariantResult]) -> str:
    """The README's table: one row per variant, numbers as measured (no rounding beyond display)."""
    def f(x: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if x is None else f"{x * scale:.{digits}f}"

    rows = ["| config | GAN its | FD (best) | U-Net IoU | ACC | mIoU | final mask area | wall (s) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.name} | {r.steps} | {f(r.fd, 1, 3)} | {f(r.iou, 100)} | {f(r.acc, 100)} | "
                    f"{f(r.miou, 100)} | {f(r.final_mask_area, 1, 2)} | {r.wall_s:.0f} |")
    return "\n".join(rows)
