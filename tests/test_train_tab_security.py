"""The Train tab under hostile requests: every bad setting is refused before any process starts, racing
starts launch one job, and Stop ends the job's whole process group (checked in /proc, not by trust).
Through the running app, and who may train: tests/test_train_access.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from studio import jobs

HOSTILE_TEXT = ["../etc", "..", "/etc", "/", "horses/../../etc", "horses/", "./horses", "~", "escape",
                "synthetic; rm -rf /", "$(touch /tmp/elgan-pwned)", "`touch /tmp/elgan-pwned`",
                "synthetic\nrm -rf /", "synthetic && id", "synthetic | sh", "", " synthetic", "synthetic\0x",
                "%2e%2e%2fetc", "C:\\Windows"]
BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    *[(dict(dataset=d), "dataset") for d in HOSTILE_TEXT],
    *[(dict(program=p), "program") for p in ("gan; rm -rf /", "$(id)", "training.train_gan", "GAN", "", "evaluate")],
    *[(dict(ablation=a), "ablation") for a in ("F", "", "e", "E; rm -rf /", "A B", "`id`")],
    *[(dict(size=s), "resolution") for s in (0, -32, 33, 48, 256, 10**9, 2**63)],
    *[(dict(size=s), "whole numbers") for s in ("32; rm -rf /", "$(id)", None, float("nan"), float("inf"))],
    *[(dict(iters=n), "iterations") for n in (0, -1, -(10**9), jobs.MAX_ITERS + 1, 10**18)],
    *[(dict(program="pipeline", unet_steps=n), "U-Net steps") for n in (0, -5, jobs.MAX_ITERS + 1)],
    *[(dict(threads=n), "threads") for n in (0, -1, 10**6)],
    *[(dict(d_width=w), "discriminator width") for w in (-1, -(10**9), 257, 10**18, "16; rm -rf /", "$(id)",
                                                        None, float("nan"), float("inf"))],
    *[(dict(program="unet", gan_bundle=b), "GAN bundle")
      for b in ("", "/etc/passwd", "../checkpoints/x.safetensors", "untrained", "a.safetensors; rm -rf /")],
]


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A data root with one real dataset and a symlink that escapes it; an empty runs root; a decoy."""
    data, runs, outside = tmp_path / "data", tmp_path / "runs", tmp_path / "outside"
    (data / "horses").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    (data / "escape").symlink_to(outside, target_is_directory=True)
    (data / "loop").symlink_to(data / "horses", target_is_directory=True)  # inside the root: fine
    runs.mkdir()
    return data, runs, outside


@pytest.fixture()
def no_spawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fails the test if anything tries to start a process; records the attempts."""
    spawned: list[Any] = []

    def refuse(*args: Any, **kw: Any) -> None:
        spawned.append(args)
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(jobs.subprocess, "Popen", refuse)
    return spawned


def test_symlinks_out_of_the_data_root_are_not_datasets(roots) -> None:
    data, _, outside = roots
    assert jobs.list_datasets(data) == ["synthetic", "horses", "loop"]
    assert jobs.data_spec("loop", data) == f"folder:{(data / 'horses').resolve()}"
    with pytest.raises(jobs.JobError, match="dataset"):
        jobs.data_spec("escape", data)


@pytest.mark.parametrize("bad, says", BAD_SETTINGS, ids=[repr(b)[:40] for b, _ in BAD_SETTINGS])
def test_hostile_setting_is_refused_before_any_process(roots, no_spawn, bad: dict[str, Any], says: str) -> None:
    data, runs, _ = roots
    settings = replace(jobs.TrainSettings(dataset="horses", size=32, iters=10), **bad)
    with pytest.raises(jobs.JobError, match=says):
        jobs.start_job(settings, runs, data, models=["/models/good.safetensors"])
    assert not no_spawn and list(runs.iterdir()) == [], "no run folder, no lock, no process"
    assert not Path("/tmp/elgan-pwned").exists()


def test_argv_never_passes_through_a_shell(roots, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a valid request starts: an argv list of this project's CLI, no shell, its own session."""
    data, runs, _ = roots
    calls: list[tuple[Any, dict[str, Any]]] = []

    class FakeProcess:
        pid = os.getpid()  # alive, so the job reads as running; never signalled (stopped by hand below)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(jobs.subprocess, "Popen", lambda argv, **kw: calls.append((argv, kw)) or FakeProcess())
    monkeypatch.setattr(jobs, "_reap", lambda *a: None)
    jobs.start_job(jobs.TrainSettings(dataset="loop", size=32, iters=10), runs, data)
    (argv, kw), = calls
    assert argv[:3] == [sys.executable, "-m", "training.train_gan"] and all(isinstance(a, str) for a in argv)
    assert kw.get("shell", False) is False and kw["start_new_session"] and kw["stdin"] == subprocess.DEVNULL
    assert argv[argv.index("--data") + 1] == f"folder:{(data / 'horses').resolve()}"
    (runs / jobs.LOCK).unlink()


def test_run_names_cannot_leave_the_runs_root(roots, no_spawn) -> None:
    data, runs, outside = roots
    (outside / jobs.RUN_INFO).write_text(json.dumps({"settings": asdict(jobs.TrainSettings())}))
    for name in ("..", "../outside", str(outside), "/etc", ".studio-job.json", "", "a/b", "..\\outside",
                 "00000-gan; rm -rf /"):
        with pytest.raises(jobs.JobError, match="unknown run"):
            jobs.resume_job(name, runs, data)
        with pytest.raises(jobs.JobError, match="unknown run"):
            jobs.run_folder(runs, name)
    assert not no_spawn


SLEEPER = ("import signal, subprocess, sys, time, pathlib; "
           "signal.signal(signal.SIGTERM, signal.SIG_IGN); "  # a stubborn leader: only SIGKILL ends it
           "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
           "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)']); "
           "pathlib.Path(sys.argv[1]).write_text(str(child.pid)); time.sleep(120)")


def _gone(pid: int) -> bool:
    """No such process, or only its zombie entry left (it has ended; its parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def test_racing_starts_launch_one_job_and_stop_ends_the_group(tmp_path: Path, roots,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data, runs, _ = roots
    child_file = tmp_path / "child.pid"
    monkeypatch.setattr(jobs, "build_argv", lambda *a, **k: [sys.executable, "-c", SLEEPER, str(child_file)])
    monkeypatch.setattr(jobs, "STOP_GRACE_S", 0.5)
    real_popen, started = subprocess.Popen, []

    def counting_popen(*args: Any, **kw: Any) -> subprocess.Popen:
        started.append(args)
        return real_popen(*args, **kw)

    monkeypatch.setattr(jobs.subprocess, "Popen", counting_popen)
    n = 8
    barrier, results = threading.Barrier(n), []

    def start() -> None:
        barrier.wait()
        try:
            results.append(jobs.start_job(jobs.TrainSettings(size=32, iters=10), runs, data))
        except jobs.JobError as exc:
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = [r for r in results if isinstance(r, jobs.JobStatus)]
    refused = [r for r in results if isinstance(r, jobs.JobError)]
    assert len(ok) == 1 and len(refused) == n - 1 and len(started) == 1
    assert all("already running" in str(e) or "being started" in str(e) for e in refused)
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [ok[0].run_dir.name], \
        "the refused starts leave no empty run folders"
    leader, child = ok[0].pid, int(_wait_file(child_file))
    assert not _gone(leader) and not _gone(child)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start_job(jobs.TrainSettings(size=32, iters=10), runs, data)

    t0 = time.monotonic()
    stopped = jobs.stop_job(runs)
    assert stopped.stopped and time.monotonic() - t0 < 10
    assert "stopped" in jobs.job_status(runs).message  # at once: the stop waits for the exit to be recorded
    deadline = time.monotonic() + 10
    while not (_gone(leader) and _gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(leader) and _gone(child), "SIGTERM-ignoring leader and child were killed with the group"
    group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == leader]
    assert all(_gone(p) for p in group), "nothing of the job's process group is still running"
    assert not (runs / jobs.LOCK).exists() and not jobs.job_status(runs).running


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_an_exited_job_is_running_until_its_exit_is_recorded(roots, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the process's exit and the reaper's record of its return code (a moment, longer on a busy
    machine) the status must not say "ended": a watcher would stop polling before "finished"."""
    data, runs, _ = roots
    monkeypatch.setattr(jobs, "build_argv", lambda *a, **k: [sys.executable, "-c", "pass"])
    real_reap, release = jobs._reap, threading.Event()

    def slow_reap(proc: subprocess.Popen, run_dir: Path, lock: Path) -> None:
        proc.wait()  # exited and reaped by the OS; its return code not yet recorded
        release.wait(10)
        real_reap(proc, run_dir, lock)

    monkeypatch.setattr(jobs, "_reap", slow_reap)
    run = jobs.start_job(jobs.TrainSettings(size=32, iters=10), runs, data).run_dir
    seen = []
    for _ in range(20):
        seen.append(jobs.job_status(runs, run.name))
        time.sleep(0.05)
    assert all(s.running for s in seen), [s.message for s in seen]
    release.set()
    deadline = time.monotonic() + 10
    while jobs.job_status(runs, run.name).running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert jobs.job_status(runs, run.name).message == "finished"
