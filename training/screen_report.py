"""One table and a set of curves from several pipeline runs: a screening at a glance.

  python -m training.screen_report --run "B, paper D=runs/screen64/B-paper" \
      --run "B, projected D=runs/screen64/B-projected" --plots docs/screen64 [--json rows.json]

Each --run is LABEL=RUN_FOLDER (a training.pipeline folder: gan/log.jsonl, gan/DONE, eval.json -- the
pipeline's, or the one line of training.evaluate --json). The table:
GAN iterations, the best FD-Lite0 and its step (the checkpoint the U-Net learned from),
the U-Net's ACC / IoU / mIoU as the pipeline scored it, and the layer health over the last fifth of the
logged steps (mean mask area, near-binary fraction, E_x and E_pi top-1, D(background alone) -
D(composite), the share of logged steps that warned). --plots writes PREFIX_mask_area.png,
PREFIX_bg_minus_composite.png, PREFIX_ex_top1.png and PREFIX_fd_lite0.png (one line per run; a curve that
no run logged is left out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from elgan.plots import line_chart
from elgan.train.runlog import read_records

HEALTH = ("mask_area", "mask_binary_frac", "health_ex_top1", "health_epi_top1", "health_bg_minus_composite")
CURVES = {"mask_area": ("mean mask area", (0.0, 1.0)),
          "health_bg_minus_composite": ("D(background alone) - D(composite)", None),
          "health_ex_top1": ("E_x top-1 on fakes", (0.0, 1.0)),
          "FD-Lite0": ("FD-Lite0 (lower is better)", None)}


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(label: str, run: Path) -> dict[str, Any]:
    records = read_records(run / "gan" / "log.jsonl")
    if not records:
        raise SystemExit(f"{run}: no GAN log (gan/log.jsonl)")
    tail = [r for r in records if "health_bg_minus_composite" in r]
    tail = tail[-max(1, len(tail) // 5):]
    fds = [(r["step"], r["FD-Lite0"]) for r in records if "FD-Lite0" in r]
    best = min(fds, key=lambda sf: sf[1]) if fds else (None, None)
    ev = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {}
    scores = ev.get("scores") or ev  # the pipeline nests its scores; training.evaluate --json does not
    row = {"label": label, "run": str(run), "gan_iters": records[-1]["step"],
           "best_fd_lite0": best[1], "best_step": best[0], "acc": scores.get("acc"), "iou": scores.get("iou"),
           "miou": scores.get("miou"), "warned_share": _mean([float("health_warning" in r) for r in tail])}
    for key in HEALTH:
        row[key] = _mean([r[key] for r in tail if isinstance(r.get(key), (int, float))])
    return row


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | GAN its | best FD-Lite0 (step) | U-Net IoU | ACC | mIoU | mask area | "
            "binary | E_x top-1 | E_pi top-1 | D(bg) - D(img) | warned |\n|" + "---|" * 12)
    lines = [head]
    for r in rows:
        fd = f"{r['best_fd_lite0']:.1f} ({r['best_step']})" if r["best_fd_lite0"] is not None else "–"
        lines.append(f"| {r['label']} | {r['gan_iters']} | {fd} | {_fmt(r['iou'])} | "
                     f"{_fmt(r['acc'])} | {_fmt(r['miou'])} | {_fmt(r['mask_area'], 2)} | "
                     f"{_fmt(r['mask_binary_frac'], 2)} | {_fmt(r['health_ex_top1'], 2)} | "
                     f"{_fmt(r['health_epi_top1'], 2)} | {_fmt(r['health_bg_minus_composite'], 2)} | "
                     f"{_fmt(r['warned_share'], 2)} |")
    return "\n".join(lines)


def plots(runs: dict[str, Path], prefix: str) -> list[Path]:
    written = []
    logs = {label: read_records(run / "gan" / "log.jsonl") for label, run in runs.items()}
    for key, (title, y_range) in CURVES.items():
        series = {}
        for label, records in logs.items():
            pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            if pts:
                series[label] = ([p[0] for p in pts], [p[1] for p in pts])
        if series:
            path = Path(f"{prefix}_{key.replace('health_', '').replace('-', '_').lower()}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            line_chart(series, path, title=title, xlabel="GAN iteration", y_range=y_range)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.screen_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="LABEL=RUN_FOLDER (repeatable)")
    p.add_argument("--plots", default="", help="path prefix of the curve PNGs ('' = no plots)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    runs = {}
    for item in args.run:
        label, sep, folder = item.rpartition("=")
        if not sep or not label:
            p.error(f"--run takes LABEL=RUN_FOLDER, got {item!r}")
        runs[label] = Path(folder)
    rows = [summarise(label, run) for label, run in runs.items()]
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.plots:
        for path in plots(runs, args.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
