"""The run log every trainer writes and the app and ablation read: cut lines skipped, resume truncates."""

from __future__ import annotations

import json
from pathlib import Path

from elgan.train.runlog import append_record, read_records, truncate_after


def test_a_cut_line_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    for step in (25, 50, 75):
        append_record(log, {"step": step, "loss": step / 100})
    with open(log, "a", encoding="utf-8") as f:
        f.write('[1, 2]\n{"no_step": 1}\n{"step": "x"}\n{"step": 100, "lo')  # not records; a kill mid-line
    assert [r["step"] for r in read_records(log)] == [25, 50, 75]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_truncate_after_keeps_the_resumed_steps_only(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    for step in (25, 50, 75, 100):
        append_record(log, {"step": step, "mask_area": 0.1234567890123})
    log.write_text(log.read_text() + '{"step": 125, "ma')
    truncate_after(log, 50)
    lines = log.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [25, 50]
    assert json.loads(lines[0])["mask_area"] == 0.1234567890123  # values survive the rewrite exactly
    append_record(log, {"step": 75})
    assert [r["step"] for r in read_records(log)] == [25, 50, 75]
    truncate_after(tmp_path / "missing.jsonl", 10)  # nothing to do, no error
    assert not (tmp_path / "missing.jsonl").exists()
