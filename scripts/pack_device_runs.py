"""Pick the models of a batch of pipeline runs by rules fixed in advance, and pack what comes back.

  python scripts/pack_device_runs.py --runs RUNS --out OUT --names syn-E-g12 ... horse-B-g12

Rules (scripts/device_128.sh's header): among runs named ``syn-*``, the best IoU on the synthetic
validation split (``<run>/val.json``, written before this); among ``horse-*``, the lowest FD-RotNet of
the GAN stage (``gan/DONE``). Writes into OUT: the chosen bundles split in parts of at most 15 MiB
(``<run>.safetensors.partNN``: a transfer that takes few, bounded files), ``runs.tgz`` with every
run's config, logs, scores, stage markers and two sample grids (the best FD step's and the last), and
``selection.json``. Never optimiser states or intermediate checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from elgan.train.runlog import read_records  # noqa: E402

PART = 15 * 2**20
SMALL = ("config.json", "eval.json", "val.json", "val.err", "gan/DONE", "unet/DONE", "gan/log.jsonl",
         "unet/log.jsonl", "gan/config.json", "unet/config.json", "gan/rotnet_log.jsonl")


def read_json(path: Path) -> dict | None:
    """A JSON file, or the last line of a command's output that ends with one JSON line."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for candidate in (text, text.strip().splitlines()[-1] if text.strip() else ""):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def best_fd_step(run: Path) -> int | None:
    """The step of the lowest FD in the GAN's log.jsonl (the step best.safetensors was written at)."""
    fds = [(fd, rec["step"]) for rec in read_records(run / "gan" / "log.jsonl")
           if (fd := next((v for k, v in rec.items() if k.startswith("FD")), None)) is not None]
    return min(fds)[1] if fds else None


def choose(runs: Path, names: list[str]) -> dict[str, object]:
    syn = {n: read_json(runs / n / "val.json") for n in names if n.startswith("syn-")}
    syn = {n: v for n, v in syn.items() if v and (runs / n / "bundle.safetensors").exists()}
    horse = {n: read_json(runs / n / "gan" / "DONE") for n in names if n.startswith("horse-")}
    horse = {n: v for n, v in horse.items() if v and v.get("best_fd") is not None
             and (runs / n / "bundle.safetensors").exists()}
    return {"synthetic": max(syn, key=lambda n: syn[n]["iou"]) if syn else None,
            "synthetic_val": dict(syn),
            "horse": min(horse, key=lambda n: horse[n]["best_fd"]) if horse else
            next((n for n in names if n.startswith("horse-") and (runs / n / "bundle.safetensors").exists()), None),
            "horse_fd": {n: v["best_fd"] for n, v in horse.items()}}


def split_file(src: Path, out: Path, stem: str) -> list[str]:
    names = []
    with open(src, "rb") as f:
        for i, chunk in enumerate(iter(lambda: f.read(PART), b"")):
            name = f"{stem}.safetensors.part{i:02d}"
            (out / name).write_bytes(chunk)
            names.append(name)
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--names", nargs="+", required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sel = choose(args.runs, args.names)
    sel["parts"] = {}
    for key in ("synthetic", "horse"):
        name = sel[key]
        if name:
            sel["parts"][name] = split_file(args.runs / name / "bundle.safetensors", args.out, name)
    with tarfile.open(args.out / "runs.tgz", "w:gz") as tar:
        for n in args.names:
            run = args.runs / n
            for rel in SMALL:
                if (run / rel).exists():
                    tar.add(run / rel, f"{n}/{rel}")
            samples = sorted((run / "gan" / "samples").glob("*.png"))
            best = best_fd_step(run)
            keep = {s for s in samples[-1:]} | {s for s in samples if best is not None and int(s.stem) == best}
            for s in sorted(keep):
                tar.add(s, f"{n}/gan/samples/{s.name}")
            for log in (args.runs / f"{n}.log", args.runs / f"probe-{n}.json", args.runs / f"probe-{n}.err"):
                if log.exists():
                    tar.add(log, f"logs/{log.name}")
        for log in sorted(args.runs.glob("smoke-*.log")) + [args.runs / "data.log"]:
            if log.exists():
                tar.add(log, f"logs/{log.name}")
    (args.out / "selection.json").write_text(json.dumps(sel, indent=2))
    print(json.dumps(sel, indent=2))


if __name__ == "__main__":
    main()
