"""The run log, log.jsonl: one JSON object per logged step, written by both trainers and read by the
app's curves and the ablation table.

One reader and one writer so that every consumer treats a line cut by a kill the same way (skipped,
never fatal), and a resumed run forgets the steps it is about to redo (no duplicate steps in a plot).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_text


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every well-formed record (a JSON object with a numeric "step"); [] when the file is missing."""
    records: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
                    records.append(rec)
    except FileNotFoundError:
        return []
    return records


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_after(path: str | Path, step: int) -> None:
    """On resume: drop the records of steps after `step` (the resumed state will redo them), atomically."""
    if not Path(path).exists():
        return
    keep = [json.dumps(r) for r in read_records(path) if r["step"] <= step]
    atomic_write_text(Path(path), "".join(k + "\n" for k in keep))


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0, unit: str = "it") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled, dynamic_ncols=True, unit=unit)
