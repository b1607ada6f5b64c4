"""Job control for the Train tab: one training process at a time, started from validated settings.

Safety by construction: a request carries only *choices* (program, dataset name, resolution, counts,
ablation letter, discriminator width), each checked against a fixed list or range; the command is then
built here as typed values of this project's own CLIs (``python -m training.<program>``, flags spelt by
each CLI's own parser: training/commands.py), an argv list run without a shell, in a new session (its
own process group) so that Stop reaches the process and every child it spawned. Datasets are "synthetic"
or a folder *directly* under the data root; run folders are created by this module under the runs root.
No path or command text from a request reaches the process.

State lives on disk, not in the app, so it survives a browser refresh and an app restart:

    <runs root>/.studio-job.json     the running job: pid, its start time (against pid reuse), run folder
    <run>/studio.json                settings, argv and start time of the run
    <run>/output.log                 the process's stdout and stderr
    <run>/studio-exit.json           written when it ends: return code, and whether Stop ended it
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from elgan.checkpoint import atomic_write_text
from elgan.config import ABLATIONS, SIZES, DiscriminatorConfig, UNetConfig, knob_info, knob_range
from training import commands

from .access import scrub_paths
from .registry import StudioError

PROGRAMS = ("pipeline", "gan", "unet")  # whole method | ELGAN only | U-Net on the selected model's G
COMMANDS = {"pipeline": commands.PipelineCommand, "gan": commands.GanCommand, "unet": commands.UNetCommand}
PIPELINE_PRESET = {32: "tiny", 64: "cpu", 128: "paper"}  # the pipeline's preset per resolution
GAN_WIDTH = {32: 8, 64: 12, 128: 16}  # generator width of GAN-only runs per resolution
MAX_ITERS = 200_000
MAX_THREADS = max(1, os.cpu_count() or 1)
D_WIDTH = knob_info(DiscriminatorConfig, "width")  # the knob behind --d-width / --gan-d-width: its bounds
ENCODERS = knob_info(UNetConfig, "encoder")["choices"]  # --encoder / --unet-encoder: scratch | lite0
LOCK = ".studio-job.json"
RUN_INFO, EXIT_INFO, OUTPUT = "studio.json", "studio-exit.json", "output.log"
STOP_GRACE_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[1]  # where `python -m training.*` resolves
_launch_lock = threading.Lock()  # serialises start/stop within this process; the lock file does it across
_reaping: set[int] = set()  # pids whose reaper thread (in this process) will record the exit: not "ended" yet


class JobError(StudioError):
    """A training request is refused; the message says which setting or why."""


@dataclass(frozen=True)
class TrainSettings:
    program: str = "gan"  # one of PROGRAMS
    dataset: str = "synthetic"  # "synthetic" or the name of a folder directly under the data root
    size: int = 32  # resolution, one of SIZES
    iters: int = 200  # GAN iterations (pipeline and gan)
    ablation: str = "E"  # Table 3 configuration of GAN-only runs (the pipeline always trains E)
    unet_steps: int = 200  # U-Net steps (pipeline and unet)
    threads: int = 1  # CPU threads of the training process
    gan_bundle: str = ""  # unet program: the model bundle whose generator streams the pairs
    d_width: int = 0  # discriminator width (pipeline and gan); 0: the CLIs' default rule, the generator's width
    unet_encoder: str = "scratch"  # U-Net encoder (pipeline and unet): the paper's from scratch, or the frozen Lite0


@dataclass(frozen=True)
class JobStatus:
    running: bool
    run_dir: Path | None  # the running job's run, else the run asked about
    pid: int | None = None
    returncode: int | None = None  # once ended (None while running or when unknown)
    stopped: bool = False  # ended by Stop
    message: str = ""


def list_datasets(data_root: Path | None) -> list[str]:
    """Choices of the dataset selector: "synthetic", then the folders directly under the data root."""
    names = ["synthetic"]
    if data_root is not None and data_root.is_dir():
        root = data_root.resolve()  # a symlinked sub-folder that leads outside the root is not offered
        names += sorted(p.name for p in data_root.iterdir() if p.is_dir() and not p.name.startswith(".")
                        and p.resolve().is_relative_to(root))
    return names


def data_spec(dataset: str, data_root: Path | None) -> str:
    """A validated dataset choice -> the CLIs' data spec (the kind is recognised from the folder's layout)."""
    if dataset == "synthetic":
        return "synthetic"
    if dataset not in list_datasets(data_root) or data_root is None:
        raise JobError(f"unknown dataset {dataset!r}; choose one of {list_datasets(data_root)}")
    folder = (data_root / dataset).resolve()
    if not folder.is_relative_to(data_root.resolve()):  # re-checked: the link may have changed since listing
        raise JobError(f"dataset {dataset!r} leads outside the data root")
    if (folder / "images.txt").is_file() or (folder / "CUB_200_2011").is_dir():
        return f"cub:{folder}"
    if (folder / "data.mdb").is_file():
        return f"lsun:{folder}"
    return f"folder:{folder}"


def validate(s: TrainSettings, data_root: Path | None, models: list[str] | None = None) -> TrainSettings:
    """Check every setting against its list or range; JobError names the first one that is wrong."""
    if s.program not in PROGRAMS:
        raise JobError(f"program must be one of {PROGRAMS}, got {s.program!r}")
    data_spec(s.dataset, data_root)
    try:
        size, iters, steps, threads = int(s.size), int(s.iters), int(s.unet_steps), int(s.threads)
    except (TypeError, ValueError, OverflowError):  # "32; rm -rf /", NaN, infinity, None
        raise JobError(f"resolution, iterations, U-Net steps and threads must be whole numbers, got "
                       f"{s.size!r}, {s.iters!r}, {s.unet_steps!r}, {s.threads!r}") from None
    if size not in SIZES:
        raise JobError(f"resolution must be one of {SIZES}, got {s.size}")
    if s.ablation not in ABLATIONS:
        raise JobError(f"ablation must be one of {ABLATIONS}, got {s.ablation!r}")
    for name, value in (("iterations", iters), ("U-Net steps", steps)):
        if not 1 <= value <= MAX_ITERS:
            raise JobError(f"{name} must be in [1, {MAX_ITERS}], got {value}")
    if not 1 <= threads <= MAX_THREADS:
        raise JobError(f"threads must be in [1, {MAX_THREADS}], got {threads}")
    try:
        d_width = int(s.d_width)
    except (TypeError, ValueError, OverflowError):
        raise JobError(f"discriminator width must be a whole number (0: the default), got {s.d_width!r}") from None
    if d_width != 0 and not D_WIDTH["lo"] <= d_width <= D_WIDTH["hi"]:
        raise JobError(f"discriminator width must be 0 (the default: the generator's width) or "
                       f"{knob_range(D_WIDTH)}, got {d_width}")
    if s.unet_encoder not in ENCODERS:
        raise JobError(f"U-Net encoder must be one of {ENCODERS}, got {s.unet_encoder!r}")
    if s.program == "unet" and (not s.gan_bundle or s.gan_bundle not in (models or [])):
        raise JobError("U-Net-only training needs a trained GAN bundle: select one in the model selector "
                       "(not the untrained demo model)")
    return replace(s, size=size, iters=iters, unet_steps=steps, threads=threads, d_width=d_width)


def _every(n: int, cap: int) -> int:
    return max(1, min(cap, n // 10))


def command(s: TrainSettings, run_dir: Path, data_root: Path | None, resume: bool = False) -> commands.Command:
    """A validated request as its program's typed command; a resumed run passes only what --resume may change."""
    out = str(run_dir)
    if resume:
        return COMMANDS[s.program](out=out, no_progress=True, resume=True,
                                   threads=None if s.program == "unet" else s.threads)
    if s.program == "pipeline":
        return commands.PipelineCommand(out=out, no_progress=True, preset=PIPELINE_PRESET[s.size],
                                        data=data_spec(s.dataset, data_root), gan_iters=s.iters,
                                        unet_steps=s.unet_steps, gan_d_width=s.d_width or None, threads=s.threads,
                                        unet_encoder=s.unet_encoder)
    if s.program == "gan":
        every = _every(s.iters, 500)
        return commands.GanCommand(out=out, no_progress=True, config=s.ablation, size=s.size,
                                   width=GAN_WIDTH[s.size], d_width=s.d_width or None, iters=s.iters,
                                   data=data_spec(s.dataset, data_root),
                                   sample_every=every, ckpt_every=every, log_every=max(1, min(25, every)),
                                   fd_every=max(1, min(1000, s.iters // 4)), fd_samples=min(1000, max(64, s.iters)),
                                   rotnet_iters=min(600, max(20, s.iters // 2)), threads=s.threads)
    every = _every(s.unet_steps, 500)
    return commands.UNetCommand(out=out, no_progress=True, gan=s.gan_bundle, steps=s.unet_steps, batch=32,
                                val_size=min(500, max(32, s.unet_steps)), val_every=every, ckpt_every=every,
                                log_every=max(1, min(25, every)), threads=s.threads, encoder=s.unet_encoder)


def build_argv(s: TrainSettings, run_dir: Path, data_root: Path | None, resume: bool = False) -> list[str]:
    """The command as an argv list (never a shell string), its flags spelt by the program's own parser."""
    return commands.argv(command(s, run_dir, data_root, resume))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "data"


def new_run_dir(runs_root: Path, s: TrainSettings) -> Path:
    """runs/00007-gan-synthetic-64-E (numbered like stylegan2-ada's run folders), created exclusively."""
    runs_root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in runs_root.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
    n = max(numbers, default=-1) + 1
    tag = s.ablation if s.program == "gan" else ("E" if s.program == "pipeline" else "unet")
    while True:
        run = runs_root / f"{n:05d}-{s.program}-{_slug(s.dataset)}-{s.size}-{tag}"
        try:
            run.mkdir()
            return run
        except FileExistsError:
            n += 1


# ---- processes --------------------------------------------------------------------------------------

def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (Linux), which tells a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has finished


def _alive(pid: int, ticks: int | None) -> bool:
    if Path("/proc").is_dir():
        now = _start_ticks(pid)
        return now is not None and (ticks is None or now == ticks)
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _reap(proc: subprocess.Popen, run_dir: Path, lock: Path) -> None:
    """Wait for the process (no zombie), record how it ended, release the lock if it is still ours."""
    try:
        code = proc.wait()
        info = _read_json(run_dir / EXIT_INFO) or {}
        atomic_write_text(run_dir / EXIT_INFO, json.dumps({**info, "returncode": code, "ended": time.time()}))
        held = _read_json(lock)
        if held is not None and held.get("pid") == proc.pid:
            lock.unlink(missing_ok=True)
    finally:
        _reaping.discard(proc.pid)


def _current(runs_root: Path) -> dict[str, Any] | None:
    """The running job's lock record; a stale lock (process gone) is removed and None returned."""
    lock = runs_root / LOCK
    held = _read_json(lock)
    if held is None:
        if lock.exists() and time.time() - lock.stat().st_mtime > 30:
            lock.unlink(missing_ok=True)  # unreadable for long: not a start in progress
        return None
    if held.get("pid") is None:  # claimed, process not started yet (or the claimer died)
        if time.time() - float(held.get("claimed", 0)) < 30:
            return held
        lock.unlink(missing_ok=True)
        return None
    if _alive(int(held["pid"]), held.get("ticks")) or int(held["pid"]) in _reaping:
        return held  # running, or exited with its return code about to be recorded by our reaper
    run = Path(held["run_dir"])
    if not (run / EXIT_INFO).exists():  # ended while no app was watching it
        atomic_write_text(run / EXIT_INFO, json.dumps({"returncode": None, "ended": time.time()}))
    lock.unlink(missing_ok=True)
    return None


def _launch(argv: list[str], run_dir: Path, runs_root: Path, record: dict[str, Any]) -> JobStatus:
    lock = runs_root / LOCK
    with _launch_lock:
        if _current(runs_root) is not None:
            raise JobError("a training job is already running; stop it first (one job at a time)")
        runs_root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise JobError("a training job is being started by another session") from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": None, "claimed": time.time(), "run_dir": str(run_dir)}, f)
        try:
            (run_dir / EXIT_INFO).unlink(missing_ok=True)
            atomic_write_text(run_dir / RUN_INFO, json.dumps({**record, "argv": argv, "started": time.time()},
                                                             indent=2))
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            with open(run_dir / OUTPUT, "ab") as out:
                proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True, env=env)
            _reaping.add(proc.pid)  # before the lock names it: a poll must never see it exited and unrecorded
        except BaseException:
            lock.unlink(missing_ok=True)
            raise
        atomic_write_text(lock, json.dumps({"pid": proc.pid, "ticks": _start_ticks(proc.pid),
                                            "run_dir": str(run_dir), "program": record["settings"]["program"]}))
        threading.Thread(target=_reap, args=(proc, run_dir, lock), daemon=True, name="reap-train").start()
    return JobStatus(True, run_dir, proc.pid, message=f"started {run_dir.name}")


def start_job(s: TrainSettings, runs_root: Path, data_root: Path | None,
              models: list[str] | None = None) -> JobStatus:
    """Validate, create a numbered run folder, launch; JobError if refused."""
    s = validate(s, data_root, models)
    if _current(runs_root) is not None:
        raise JobError("a training job is already running; stop it first (one job at a time)")
    run_dir = new_run_dir(runs_root, s)
    try:
        return _launch(build_argv(s, run_dir, data_root), run_dir, runs_root, {"settings": asdict(s)})
    except (JobError, commands.CommandError):  # lost a race, or a CLI changed: leave no empty run folder
        with contextlib.suppress(OSError):
            run_dir.rmdir()
        raise


def run_folder(runs_root: Path, name: str) -> Path:
    """A run folder by name: only direct children of the runs root that the studio started."""
    run = runs_root / name
    if not name or "/" in name or "\\" in name or name.startswith(".") or not (run / RUN_INFO).is_file():
        raise JobError(f"unknown run {name!r}; choose one from the list")
    return run


def settings_of(run: Path) -> TrainSettings:
    record = _read_json(run / RUN_INFO) or {}
    try:
        return TrainSettings(**record["settings"])
    except (KeyError, TypeError) as exc:
        raise JobError(f"{run.name}: its {RUN_INFO} is unreadable") from exc


def resume_job(name: str, runs_root: Path, data_root: Path | None, models: list[str] | None = None) -> JobStatus:
    """Continue a stopped run in its folder; a run stopped before its first checkpoint starts over."""
    run = run_folder(runs_root, name)
    s = validate(settings_of(run), data_root, models)
    saved = run / ("config.json" if s.program == "pipeline" else "state.safetensors")
    resumable = saved.is_file()
    if not resumable:
        (run / "log.jsonl").unlink(missing_ok=True)  # its lines belong to the lost attempt
    return _launch(build_argv(s, run, data_root, resume=resumable), run, runs_root, {"settings": asdict(s)})


def stop_job(runs_root: Path) -> JobStatus:
    """SIGTERM to the job's process group, SIGKILL after a grace period; returns the final status."""
    with _launch_lock:
        held = _current(runs_root)
        if held is None or held.get("pid") is None:
            return JobStatus(False, None, message="no training job is running")
        pid, run = int(held["pid"]), Path(held["run_dir"])
        atomic_write_text(run / EXIT_INFO, json.dumps({"stopped": True}))
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)  # the group: the trainer and anything it spawned
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid, held.get("ticks")):
                time.sleep(0.05)
            if not _alive(pid, held.get("ticks")):
                break
        try:  # children that outlived the leader still carry its process group id
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5.0  # our reaper records the exit (a moment): then the status says so
        while pid in _reaping and time.monotonic() < deadline:
            time.sleep(0.02)
        _current(runs_root)  # clears the lock if the reaper (another app) has not
    return JobStatus(False, run, pid, stopped=True, message=f"stopped {run.name}")


def job_status(runs_root: Path, run_name: str | None = None) -> JobStatus:
    """The running job if any, else how the named (or latest) run ended."""
    held = _current(runs_root)
    if held is not None:
        return JobStatus(True, Path(held["run_dir"]), held.get("pid"), message="running")
    names = list_runs(runs_root)
    name = run_name if run_name in names else (names[0] if names else None)
    if name is None:
        return JobStatus(False, None, message="no runs yet")
    run = runs_root / name
    info = _read_json(run / EXIT_INFO) or {}
    code, stopped = info.get("returncode"), bool(info.get("stopped"))
    if not info:
        state = "not started"
    elif stopped:
        state = "stopped (resume it to continue)"
    elif code == 0:
        state = "finished"
    else:
        state = f"failed (exit code {code}; see its output)" if code is not None else "ended"
    return JobStatus(False, run, returncode=code, stopped=stopped, message=state)


def list_runs(runs_root: Path) -> list[str]:
    """Studio runs under the runs root, newest first."""
    if not runs_root.is_dir():
        return []
    return sorted((p.name for p in runs_root.iterdir() if (p / RUN_INFO).is_file()), reverse=True)


def output_tail(run: Path, lines: int = 15) -> str:
    """The last lines of a run's output as a visitor may see them: no server path (run folders read as
    'run-name/...', other paths keep their file name only)."""
    try:
        with open(run / OUTPUT, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return scrub_paths("\n".join(text.splitlines()[-lines:]), [run.parent, REPO_ROOT])
