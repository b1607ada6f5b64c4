"""What a training job is doing right now, in plain words, read from the files it writes.

Why from files: the trainers have no hook into the app and print little (``--no-progress``), and the first
logged step of a GAN run comes only after the training images are loaded and, for config E, a perceptual
network is trained -- half a minute or more on a CPU. Each stage leaves a trace on disk before that (the
run's config.json, the RotNet file, log.jsonl, a pipeline stage's DONE marker, eval.json, the bundle), so
the Train tab can say from the first second which stage a job is in, what it does and for how long.
When it has finished, result_model is the model it produced, for the model selector.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from . import curves
from .jobs import RUN_INFO, JobError, JobStatus, settings_of

DONE, EVAL, BUNDLE = "DONE", "eval.json", "bundle.safetensors"  # elgan/pipeline.py's stage markers


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _needs_rotnet(cfg: dict[str, Any]) -> bool:
    """Whether a GAN run trains its RotNet first (config E's perceptual net, or FD-RotNet)."""
    from elgan.config import ConfigError, GanTrainConfig, from_dict
    from elgan.train.instruments import needs_rotnet

    try:
        return needs_rotnet(from_dict(GanTrainConfig, cfg))
    except (ConfigError, TypeError, ValueError):
        return False


def _last(records: list[dict[str, Any]]) -> dict[str, Any]:
    return records[-1] if records else {}


def gan_stage(folder: Path) -> str:
    """A GAN run's stage (folder: a GAN-only run, or a pipeline's gan/)."""
    cfg = _json(folder / "config.json")
    if not cfg:
        return "starting: loading Python and torch"
    records = curves.read_log(folder / "log.jsonl") if (folder / "log.jsonl").is_file() else []
    if not records:
        if _needs_rotnet(cfg) and not cfg.get("rotnet") and not (folder / "rotnet.safetensors").is_file():
            return (f"loading the training images, then training the small network that judges how alike two "
                    f"pictures are (RotNet, {cfg.get('rotnet_iters', '?')} steps); the GAN starts after it")
        return (f"training the GAN: the first numbers and curves come at step {cfg.get('log_every', '?')} "
                f"of {cfg.get('iters', '?')}")
    last = records[-1]
    step, iters = int(last.get("step", 0)), int(cfg.get("iters") or 0)
    text = f"training the GAN: step {step} of {iters}" + (f" ({100 * step // iters}%)" if iters else "")
    ips, elapsed = last.get("imgs_per_s"), last.get("time")
    if isinstance(ips, (int, float)) and ips > 0:
        text += f" · {ips:.0f} images/s"
        if iters > step and isinstance(elapsed, (int, float)) and step > 0:
            text += f" · about {_clock(elapsed / step * (iters - step))} left"
    fd = next(((k, r[k]) for r in reversed(records) for k in ("FD-Lite0", "FD-RotNet", "FD-VGG16", "FID")
               if isinstance(r.get(k), (int, float))), None)
    if fd is not None:
        text += f" · picture-quality distance {fd[1]:.3g} (lower is better; {fd[0]})"
    warning = next((r["health_warning"] for r in reversed(records[-4:]) if r.get("health_warning")), "")
    return text + (f" · **warning:** {warning}" if warning else "")


def unet_stage(folder: Path, steps: int | None = None) -> str:
    """A U-Net run's stage: it learns to cut out objects from the GAN's pictures and masks."""
    cfg = _json(folder / "config.json")
    total = int(steps or cfg.get("steps") or 0)
    records = curves.read_log(folder / "log.jsonl") if (folder / "log.jsonl").is_file() else []
    last = _last(records)
    if not last:
        return "training the segmenter (U-Net) on the GAN's pictures and masks: drawing the first pairs"
    step = int(last.get("step", 0))
    text = f"training the segmenter (U-Net) on the GAN's pictures and masks: step {step}" + \
        (f" of {total} ({100 * step // total}%)" if total else "")
    iou = next((r["val_iou"] for r in reversed(records) if isinstance(r.get("val_iou"), (int, float))), None)
    if iou is not None:
        text += f" · overlap with the GAN's own masks {100 * iou:.0f}% (IoU on held-out pairs)"
    return text


def stage_line(run: Path, program: str) -> str:
    """The job's stage in plain words: 'stage 2 of 4 — training the segmenter ...'."""
    if program == "gan":
        return gan_stage(run)
    if program == "unet":
        return unet_stage(run)
    cfg = _json(run / "config.json")
    if not cfg:
        return "starting: loading Python and torch"
    if not (run / "gan" / DONE).is_file():
        if not (run / "features" / DONE).is_file() and not (run / "gan" / "config.json").is_file():
            # the features stage comes first and has no progress file of its own: it is short (a few minutes)
            return ("stage 1 of 4 — preparing the perceptual net (where the run needs a RotNet: trained once per "
                    "dataset, or found in the shared cache)")
        return f"stage 1 of 4 — {gan_stage(run / 'gan')}"
    if not (run / "unet" / DONE).is_file():
        unet_cfg = cfg.get("unet") if isinstance(cfg.get("unet"), dict) else {}
        return f"stage 2 of 4 — {unet_stage(run / 'unet', unet_cfg.get('steps'))}"
    if not (run / EVAL).is_file():
        return "stage 3 of 4 — scoring the segmenter on the data's test images (where it has masks)"
    if not (run / BUNDLE).is_file():
        return "stage 4 of 4 — writing the model file (bundle)"
    return "finishing: the model file is written"


def elapsed(run: Path, now: float | None = None) -> float | None:
    started = _json(run / RUN_INFO).get("started")
    return (now or time.time()) - float(started) if isinstance(started, (int, float)) else None


def status_line(st: JobStatus, progress: str = "") -> str:
    """The Train tab's status in Markdown: the run's name and state, never a process id or a path."""
    if st.run_dir is None:
        return f"**Idle** — {st.message}"
    head = f"**Running** `{st.run_dir.name}`" if st.running \
        else f"**Idle** — last run `{st.run_dir.name}`: {st.message}"
    return head + (f" · {progress}" if progress else "")


def job_line(st: JobStatus, program: str) -> str:
    """status_line with what the job does now (running) or where it got to (ended)."""
    if st.run_dir is None:
        return status_line(st)
    if st.running:
        took = elapsed(st.run_dir)
        return status_line(st, (f"{_clock(took)} so far · " if took is not None else "")
                           + stage_line(st.run_dir, program))
    return status_line(st, summary(st.run_dir))


def summary(run: Path) -> str:
    """Where an ended run got to: 'GAN: 200 steps, picture-quality distance 12.3 (FD-Lite0) · U-Net: 300 steps'."""
    parts = []
    for stage, records in curves.read_logs(run).items():
        if not records:
            continue
        last = records[-1]
        text = f"{'GAN' if stage == 'gan' else 'segmenter (U-Net)'}: {int(last.get('step', 0))} steps"
        fd = next(((k, r[k]) for r in reversed(records) for k in ("FD-Lite0", "FD-RotNet", "FD-VGG16", "FID")
                   if isinstance(r.get(k), (int, float))), None)
        if fd is not None:
            text += f", picture-quality distance {fd[1]:.3g} ({fd[0]}; lower is better)"
        warning = next((r["health_warning"] for r in reversed(records[-4:]) if r.get("health_warning")), "")
        parts.append(text + (f" -- warning: {warning}" if warning else ""))
    return " · ".join(parts)


def result_model(run: Path) -> Path:
    """The model a finished run produced, ready for the model selector.

    A U-Net-only run trained just the segmenter; its bundle is assembled here once, from the GAN bundle
    it streamed from and its best U-Net, so the Explore and Segment tabs get one file with both.
    """
    s = settings_of(run)
    if s.program == "gan":
        path = run / "best.safetensors"
    else:
        path = run / "bundle.safetensors"
        if s.program == "unet" and not path.is_file() and (run / "best.safetensors").is_file():
            from elgan.bundle import assemble_bundle

            assemble_bundle(s.gan_bundle, run / "best.safetensors", path, extra={"unet_run": run.name})
    if not path.is_file():
        raise JobError(f"{run.name} has no result yet ({path.name} is missing): let it finish, or resume it")
    return path
