"""A training run survives SIGKILL (at random moments, and exactly in the middle of a checkpoint write)
and a full disk: `--resume` continues from the last complete checkpoint and ends where an uninterrupted
run ends, bit for bit; no half-written file is ever visible under a checkpoint's name.

Real `python -m training.train_gan` processes at 32 px, width 4, on 16 images (about 4 s each).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from elgan import checkpoint as ckpt
from training import train_gan as cli

REPO = Path(__file__).resolve().parents[1]
ITERS = 8


def tiny(iters: int = ITERS) -> list[str]:
    return ["--size", "32", "--width", "4", "--batch", "4", "--rotnet-iters", "2", "--fd-samples", "8",
            "--fd-every", "4", "--ckpt-every", "1", "--sample-every", "4", "--log-every", "1", "--data-limit", "16",
            "--threads", "1", "--iters", str(iters), "--no-progress"]


TINY = tiny()
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Runs the CLI with one checkpoint write sabotaged: the `nth` write of the file named `target` dies (SIGKILL)
# half-way through writing its temporary file ("mid-write") or just before the rename ("before-rename").
SABOTEUR = r"""
import os, signal, sys
from pathlib import Path
import elgan.checkpoint as ck
mode, target, nth, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
real_write, real_fdopen, seen = ck.atomic_write_bytes, os.fdopen, []

class Dying:
    def __init__(self, f): self.f = f
    def __enter__(self): return self
    def __exit__(self, *exc): self.f.close()
    def write(self, data):
        self.f.write(data[: len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

def sabotaged(path, data):
    if Path(path).name == target:
        seen.append(path)
        if len(seen) == nth:
            if mode == "mid-write":
                os.fdopen = lambda fd, m: Dying(real_fdopen(fd, m))
            else:
                os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)
    return real_write(path, data)

ck.atomic_write_bytes = sabotaged
from training.train_gan import main
sys.exit(main(argv))
"""


def _train(out: Path, resume: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = ["--out", str(out), "--resume", "--threads", "1", "--no-progress"] if resume else ["--out", str(out), *TINY]
    return subprocess.run([sys.executable, "-m", "training.train_gan", *argv], cwd=REPO, env=ENV, timeout=timeout,
                          capture_output=True, text=True)


def _visible_files_are_complete(run: Path) -> int | None:
    """Every file under a checkpoint's name loads; returns the step of state.safetensors (None: none yet)."""
    for path in run.glob("*.safetensors"):
        if path.name == "state.safetensors":
            continue
        ckpt.load_bundle(path)  # raises on a partial file
    state = run / "state.safetensors"
    if not state.exists():
        return None
    loaded = ckpt.load_state(state)
    bundle = ckpt.load_bundle(run / "last.safetensors")
    assert bundle.metadata["step"] in (loaded["step"], loaded["step"] - 1)  # last is written right after state
    return int(loaded["step"])


def _steps(run: Path) -> list[int]:
    steps = []
    for line in (run / "log.jsonl").read_text().splitlines():
        steps.append(json.loads(line)["step"])  # a finished log has no cut line left
    return steps


def _generator(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_bundle(run / "last.safetensors").state_dict("generator")


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _finished(run: Path, straight: dict[str, torch.Tensor]) -> None:
    assert _visible_files_are_complete(run) == ITERS
    assert _steps(run) == list(range(1, ITERS + 1))  # no step lost, none logged twice
    assert not list(run.glob(".*.tmp")), "temporary files of the killed writes are cleaned up on resume"
    _assert_same_weights(_generator(run), straight)  # resumed exactly where it stopped


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The generator after an uninterrupted run: what every interrupted run must end with."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert cli.main(["--out", str(run), *TINY]) == 0  # in-process: the same code, one start-up less
    return _generator(run)


def _sabotaged(run: Path, mode: str, target: str, nth: int, resume: bool) -> None:
    argv = ["--out", str(run), "--resume", "--threads", "1", "--no-progress"] if resume else ["--out", str(run), *TINY]
    killed = subprocess.run([sys.executable, "-c", SABOTEUR, mode, target, str(nth), *argv], cwd=REPO, env=ENV,
                            timeout=120, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.name.split(".")[1] for p in run.glob(".*.tmp")] == [target.split(".")[0]], \
        "the kill happened inside that write (and the resume removed the older leftovers)"


def test_kill_during_checkpoint_writes(tmp_path: Path, straight: dict[str, Any]) -> None:
    run = tmp_path / "run"
    _sabotaged(run, "mid-write", "state.safetensors", 3, resume=False)  # dies writing step 3's state
    assert _visible_files_are_complete(run) == 2  # step 2's state is intact, and is what a resume reads
    _sabotaged(run, "before-rename", "last.safetensors", 2, resume=True)  # resumed at 2; dies renaming last @4
    assert _visible_files_are_complete(run) == 4  # step 4's state was complete before its bundle
    resumed = _train(run, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"finished at step {ITERS}" in resumed.stdout
    _finished(run, straight)


def _log_lines(run: Path) -> int:
    try:
        return (run / "log.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def test_random_kills_then_resume(tmp_path: Path, straight: dict[str, Any]) -> None:
    """Two runs, each SIGKILLed twice: first at a random moment of its life (imports, data, RotNet, steps),
    then at a random moment once steps are being taken (a checkpoint is written at every step). After every
    kill the folder holds only complete files, and the last resume ends like the straight run."""
    rng = random.Random(8)
    for n in range(2):
        run = tmp_path / f"run{n}"
        for attempt in range(2):
            resume = (run / "state.safetensors").exists()
            argv = ["--out", str(run), "--resume", "--threads", "1", "--no-progress"] if resume \
                else ["--out", str(run), *TINY]
            lines = _log_lines(run)
            proc = subprocess.Popen([sys.executable, "-m", "training.train_gan", *argv], cwd=REPO, env=ENV,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if attempt == 0:
                time.sleep(rng.uniform(0.5, 6.0))
            else:
                deadline = time.monotonic() + 60
                while _log_lines(run) <= lines and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            if _visible_files_are_complete(run) == ITERS:
                break
        resumed = _train(run, resume=(run / "state.safetensors").exists())
        assert resumed.returncode == 0, resumed.stderr
        _finished(run, straight)


# ---- a full disk and a damaged state, in-process through the CLI --------------------------------------

def _disk_full_on(monkeypatch: pytest.MonkeyPatch, target: str, nth: int) -> list[str]:
    """The nth write of `target` fails with ENOSPC after half of it reached the temporary file."""
    real_write, real_fdopen, seen = ckpt.atomic_write_bytes, os.fdopen, []

    class Full:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(path: Any, data: bytes) -> None:
        if Path(path).name == target:
            seen.append(str(path))
            if len(seen) == nth:
                monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
                try:
                    return real_write(path, data)
                finally:
                    monkeypatch.setattr(os, "fdopen", real_fdopen)
        return real_write(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", write)
    return seen


def test_disk_full_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    _disk_full_on(monkeypatch, "state.safetensors", 3)
    assert cli.main(["--out", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert "No space left on device while writing" in err and "state.safetensors" in err, err
    assert "previous file, if any, is unchanged" in err and "Traceback" not in err
    assert _visible_files_are_complete(run) == 2  # step 2's state is intact
    assert not list(run.glob(".*.tmp")), "the half-written temporary file is removed"
    monkeypatch.undo()
    assert cli.main(["--out", str(run), "--resume", "--threads", "1", "--no-progress"]) == 0
    assert _visible_files_are_complete(run) == ITERS and _steps(run) == list(range(1, ITERS + 1))


def test_damaged_state_is_refused_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert cli.main(["--out", str(run), *tiny(2)]) == 0
    state = run / "state.safetensors"
    state.write_bytes(state.read_bytes()[:1000])  # a disk fault, not a kill: writes are atomic
    capsys.readouterr()
    assert cli.main(["--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "state.safetensors" in err and "truncated" in err and "Traceback" not in err
