"""The mechanics both trainers share: the run folder, the resumable extras of a state file, and the clock,
caps, cadence and progress bar of the loop. What a trainer steps, measures and saves stays in its own file.

Run folder: ``config.json`` (written before any work), ``state.safetensors`` (everything resume needs),
``log.jsonl`` (one record per logged step, runlog.py). A run refuses to start over a folder that holds a
state unless resuming, and a resume refuses a folder without one. Under torchrun rank 0 alone writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_write_text
from ..config import to_dict
from . import distributed as ddp
from .runlog import progress_bar, truncate_after

STATE, LOG, CONFIG = "state.safetensors", "log.jsonl", "config.json"


# ---- the run folder (rank 0) -------------------------------------------------------------------------

def claim_run(run_dir: Path, resume: bool, what: str = "a run") -> None:
    """Refuse to start over a run (a state exists) unless resuming, and to resume a folder without one."""
    state = run_dir / STATE
    if state.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds {what}; pass resume=True (--resume) or choose "
                              "another folder")
    if resume and not state.exists():
        raise FileNotFoundError(f"{run_dir}: nothing to resume (no {STATE})")


def write_config(run_dir: Path, cfg: Any) -> None:
    """Create the folder and write config.json (the resolved config, atomically) before any work."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, json.dumps(to_dict(cfg), indent=2, sort_keys=True))


def rewind_log(run_dir: Path, step: int) -> None:
    """On resume: rank 0 drops the log records after the resumed step (the run redoes those steps)."""
    if ddp.is_main():
        truncate_after(run_dir / LOG, step)


# ---- what every rank adds to the state file -----------------------------------------------------------

def rank_state(rng: torch.Generator, key: str, **scalers: Any) -> dict[str, Any]:
    """Every rank's RNG stream and the fp16 GradScalers, as state-file entries: `key` holds rank 0's
    stream, `key`_ranks every rank's (several ranks only: exact resume for the same number), and each
    enabled scaler its state under its keyword. Collective: every rank calls it; rank 0 saves the result."""
    streams = ddp.gather_states(rng.get_state())
    entries: dict[str, Any] = {key: streams[0]}
    if len(streams) > 1:
        entries[f"{key}_ranks"] = streams
    entries.update({name: s.state_dict() for name, s in scalers.items() if s.is_enabled()})
    return entries


def load_rank_state(state: dict[str, Any], rng: torch.Generator, key: str, **scalers: Any) -> None:
    """The reverse of rank_state on every rank, under any number of ranks (ddp.rank_generator_state). A
    scaler that is off now, or was off then (e.g. fp32 -> fp16), keeps its fresh scale."""
    rng.set_state(ddp.rank_generator_state(state.get(f"{key}_ranks") or [state[key]]))
    for name, s in scalers.items():
        if s.is_enabled() and name in state:
            s.load_state_dict(state[name])


# ---- the loop ----------------------------------------------------------------------------------------

def due(step: int, every: int, total: int) -> bool:
    """Periodic work (checkpoint, samples, evaluation) at `step`: every `every` steps and at the last one."""
    return step % every == 0 or step == total


class TrainLoop:
    """One training call from `step` to `total`: the wall-time cap, the cadence of periodic work, the
    images/s of log records and the progress bar (updated and closed here, its postfix set by the trainer)."""

    def __init__(self, total: int, step: int, batch: int, max_minutes: float, desc: str, progress: bool,
                 unit: str = "it", clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.batch, self.max_minutes, self.clock = total, batch, max_minutes, clock
        self.bar = progress_bar(total, desc, progress, initial=step, unit=unit)
        self.start = self._lap_time = clock()
        self.start_step = self._lap_step = step

    def due(self, step: int, every: int) -> bool:
        return due(step, every, self.total)

    def out_of_time(self) -> bool:
        """Past max_minutes of wall time (0 = no cap) on any rank. Every rank must take the same decision,
        or one would wait forever for the others at the next collective: the flag is all-reduced."""
        return self.max_minutes > 0 and ddp.any_rank(self.clock() - self.start > self.max_minutes * 60)

    def finished(self, step: int) -> bool:
        """All `total` steps done; False when the time cap stopped the run first."""
        return step >= self.total

    def lap(self, step: int) -> tuple[float, float]:
        """(seconds since the start, global images/s since the last lap) for a log record at `step`."""
        now = self.clock()
        ips = (step - self._lap_step) * self.batch / max(now - self._lap_time, 1e-9)
        self._lap_time, self._lap_step = now, step
        return now - self.start, ips

    def images_per_s(self, step: int) -> float:
        """Global images/s over this whole call (0 when it trained nothing)."""
        elapsed = self.clock() - self.start
        return (step - self.start_step) * self.batch / elapsed if elapsed > 0 and step > self.start_step else 0.0

    def close(self) -> None:
        self.bar.close()
