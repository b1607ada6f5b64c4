"""Training curves for the Train tab, read from the same log.jsonl files the trainers write.

Logs are data (one JSON object per logged step), so the app needs no hook into the trainer: it reads
the files while they grow. A line cut by a kill or caught mid-write is skipped, never fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from elgan.train.runlog import read_records

PANELS = ("GAN losses", "layer health (0-1; background-alone score: < 0 is healthy)", "FD (model selection)",
          "speed (images/s)", "U-Net")
SKIP = {"step", "time", "lr"}


def log_files(run: Path) -> dict[str, Path]:
    """{"gan": ..., "unet": ...} log files of a run, whichever layout (pipeline stages or one program)."""
    found = {stage: run / stage / "log.jsonl" for stage in ("gan", "unet") if (run / stage / "log.jsonl").is_file()}
    single = run / "log.jsonl"
    if single.is_file():
        head = _head(single)  # a U-Net log has "loss" and no adversarial terms
        found["unet" if '"loss"' in head and '"d_adv"' not in head else "gan"] = single
    return found


def _head(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(4096)


def read_log(path: Path, max_points: int = 2000) -> list[dict[str, Any]]:
    """Records of a log.jsonl (malformed lines skipped), thinned to at most max_points, the last kept."""
    try:
        records = read_records(path)
    except OSError:
        return []
    if len(records) > max_points:
        stride = -(-len(records) // max_points)
        records = records[::stride] + ([records[-1]] if (len(records) - 1) % stride else [])
    return records


def read_logs(run: Path) -> dict[str, list[dict[str, Any]]]:
    return {stage: read_log(path) for stage, path in log_files(run).items()}


def signature(run: Path) -> str:
    """Changes whenever a log or the newest sample changes: lets the poller skip unchanged redraws."""
    parts = [run.name]
    for path in [*log_files(run).values(), *([s] if (s := latest_sample(run)) else [])]:
        st = path.stat()
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _panel(key: str, stage: str) -> int:
    """Which of PANELS a log key is drawn in: each kind of number on an axis of its own scale."""
    if stage == "unet":
        return 4
    if key.startswith(("mask_", "health_")):
        return 1
    if key.startswith(("FD", "FID")):
        return 2
    if key == "imgs_per_s":
        return 3
    return 0


def figure(logs: dict[str, list[dict[str, Any]]], title: str = "") -> go.Figure:
    """Every numeric log term against the step, in five panels (PANELS)."""
    fig = make_subplots(rows=3, cols=2, subplot_titles=PANELS, horizontal_spacing=0.08, vertical_spacing=0.1)
    for stage, records in logs.items():
        keys = sorted({k for r in records for k, v in r.items()
                       if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)})
        for key in keys:
            pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            panel = _panel(key, stage)
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers"
                                     if len(pts) < 30 else "lines", name=f"{stage}: {key}" if stage == "unet" else key,
                                     legendgroup=PANELS[panel]),
                          row=panel // 2 + 1, col=panel % 2 + 1)
    fig.update_layout(height=780, margin={"l": 40, "r": 10, "t": 60, "b": 30}, title=title or None,
                      legend={"font": {"size": 10}}, template="plotly_white")
    fig.update_xaxes(title_text="step", title_font={"size": 10})
    return fig


def latest_sample(run: Path) -> Path | None:
    """The newest sample grid (rows background | foreground | mask | image) of a run's GAN."""
    for folder in (run / "samples", run / "gan" / "samples"):
        if folder.is_dir():
            files = sorted(folder.glob("*.png"))
            if files:
                return files[-1]
    return None


def progress_line(logs: dict[str, list[dict[str, Any]]]) -> str:
    """'GAN step 150 (FD-RotNet 42.1), U-Net step 30 (loss 0.41)': the latest of each stage."""
    parts = []
    for stage, records in logs.items():
        if not records:
            continue
        last = records[-1]
        extra = next((f"{k} {last[k]:.3g}" for k in ("FD-Lite0", "FD-RotNet", "FD-VGG16", "val_iou", "loss", "g_adv")
                      if isinstance(last.get(k), (int, float))), "")
        warning = next((r["health_warning"] for r in reversed(records[-4:]) if r.get("health_warning")), "")
        parts.append(f"{'GAN' if stage == 'gan' else 'U-Net'} step {int(last['step'])}"
                     + (f" ({extra})" if extra else "") + (f" -- warning: {warning}" if warning else ""))
    return ", ".join(parts)
