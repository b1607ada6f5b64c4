"""The loop mechanics both trainers share (elgan.train.trainloop), without training: cadence, time cap, images/s,
outcome, the run folder's refusals and config.json, and the per-rank extras of a state file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from elgan.checkpoint import load_state, save_state
from elgan.train import distributed as ddp
from elgan.train import trainloop
from elgan.train.runlog import append_record, read_records
from elgan.train.trainloop import TrainLoop, claim_run, due, load_rank_state, rank_state, rewind_log, write_config


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def loop(total: int = 7, step: int = 0, batch: int = 4, max_minutes: float = 0.0) -> tuple[TrainLoop, Clock]:
    clock = Clock()
    return TrainLoop(total, step, batch, max_minutes, "test", progress=False, clock=clock), clock


def test_cadence_is_every_n_steps_and_the_last():
    assert [s for s in range(1, 8) if due(s, 3, 7)] == [3, 6, 7]
    assert [s for s in range(1, 8) if due(s, 1, 7)] == list(range(1, 8))
    assert [s for s in range(1, 8) if due(s, 100, 7)] == [7]
    tl, _ = loop(total=7)
    assert [s for s in range(1, 8) if tl.due(s, 2)] == [2, 4, 6, 7]
    assert [s for s in range(5, 10) if loop(total=9, step=4)[0].due(s, 4)] == [8, 9]  # a resumed, extended run


def test_time_cap_is_off_at_zero_and_trips_after_max_minutes(monkeypatch):
    tl, clock = loop(max_minutes=0.0)
    clock.now += 1e9
    assert not tl.out_of_time()  # 0 = no cap, however long it runs

    calls = []
    monkeypatch.setattr(ddp, "any_rank", lambda flag: calls.append(flag) or flag)  # the all-rank decision
    tl, clock = loop(max_minutes=1.5)
    clock.now += 89.9
    assert not tl.out_of_time()
    clock.now += 0.2
    assert tl.out_of_time()
    assert calls == [False, True]  # every check goes through the collective, so all ranks agree
    monkeypatch.setattr(ddp, "any_rank", lambda flag: True)  # another rank is past the cap: this one stops too
    assert loop(max_minutes=1.5)[0].out_of_time()


def test_lap_gives_elapsed_time_and_images_per_second_since_the_last_lap():
    tl, clock = loop(total=10, step=2, batch=4)
    clock.now += 2.0
    assert tl.lap(4) == (pytest.approx(2.0), pytest.approx(4.0))  # 2 steps x 4 images in 2 s
    clock.now += 0.5
    assert tl.lap(5) == (pytest.approx(2.5), pytest.approx(8.0))  # only the step since the last lap
    assert tl.lap(5)[1] == 0.0  # no time, no steps: no division by zero
    clock.now += 1.5
    assert tl.images_per_s(10) == pytest.approx(8 * 4 / 4.0)  # the whole call, from its first step (2)


def test_outcome_and_throughput_of_a_call_that_did_nothing():
    tl, clock = loop(total=5, step=5)
    clock.now += 3.0
    assert tl.finished(5) and tl.images_per_s(5) == 0.0
    tl, _ = loop(total=5, step=2)
    assert not tl.finished(3)  # stopped by the time cap before its total
    assert tl.finished(6)  # a resume with a shorter total is finished too
    tl.close()


@dataclass(frozen=True)
class Settings:
    steps: int = 3
    batch: int = 4


def test_run_folder_refusals_and_config(tmp_path: Path):
    run = tmp_path / "a" / "run"
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        claim_run(run, resume=True)
    claim_run(run, resume=False)
    write_config(run, Settings())  # creates the folder
    assert json.loads((run / "config.json").read_text()) == {"batch": 4, "steps": 3}
    assert (run / "config.json").read_text().startswith('{\n  "batch"')  # sorted, indented: diffable
    (run / trainloop.STATE).write_bytes(b"x")
    with pytest.raises(FileExistsError, match="already holds a U-Net run"):
        claim_run(run, resume=False, what="a U-Net run")
    claim_run(run, resume=True)


def test_rewind_log_drops_the_steps_a_resume_redoes(tmp_path: Path):
    for step in (1, 2, 3, 4):
        append_record(tmp_path / trainloop.LOG, {"step": step})
    rewind_log(tmp_path, 2)
    assert [r["step"] for r in read_records(tmp_path / trainloop.LOG)] == [1, 2]
    rewind_log(tmp_path / "none", 2)  # a run with no log yet


@dataclass
class FakeScaler:
    enabled: bool
    scale: float = 1.0

    def is_enabled(self) -> bool:
        return self.enabled

    def state_dict(self) -> dict:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.scale = state["scale"]


def test_rank_state_round_trips_the_rng_stream_and_enabled_scalers(tmp_path: Path):
    rng = torch.Generator().manual_seed(7)
    torch.rand(3, generator=rng)
    on, off = FakeScaler(True, 512.0), FakeScaler(False, 2.0)
    entries = rank_state(rng, "data_rng", scaler=on, other=off)
    assert set(entries) == {"data_rng", "scaler"}  # one rank: no _ranks list; a scaler that is off: nothing
    save_state(tmp_path / "s.safetensors", {"step": 3, **entries})
    expected = torch.rand(5, generator=rng)

    fresh, scaler = torch.Generator().manual_seed(0), FakeScaler(True)
    load_rank_state(load_state(tmp_path / "s.safetensors"), fresh, "data_rng", scaler=scaler)
    assert torch.equal(torch.rand(5, generator=fresh), expected) and scaler.scale == 512.0

    off_now = FakeScaler(False, 2.0)  # fp16 -> fp32: the saved scale is not applied
    load_rank_state({**entries, "other": {"scale": 9.0}}, fresh, "data_rng", scaler=off_now)
    assert off_now.scale == 2.0
    missing = FakeScaler(True, 3.0)  # fp32 -> fp16: no saved scale, the fresh one stays
    load_rank_state({"data_rng": entries["data_rng"]}, fresh, "data_rng", scaler=missing)
    assert missing.scale == 3.0


def test_a_state_of_several_ranks_gives_rank_0_its_own_stream(tmp_path: Path):
    streams = [torch.Generator().manual_seed(s).get_state() for s in (11, 12)]
    rng = torch.Generator()
    load_rank_state({"rng": streams[0], "rng_ranks": streams}, rng, "rng")  # resumed in one process
    assert torch.equal(rng.get_state(), streams[0])
