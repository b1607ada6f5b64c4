"""The Train tab under hostile requests: every bad setting is refused before any process starts, racing
starts launch one job, and Stop ends the job's whole process group (checked in /proc, not by trust)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from elgan.studio import access, jobs, progress
from elgan.studio.registry import ModelError

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
    deadline = time.monotonic() + 10
    while not (_gone(leader) and _gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(leader) and _gone(child), "SIGTERM-ignoring leader and child were killed with the group"
    group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == leader]
    assert all(_gone(p) for p in group), "nothing of the job's process group is still running"
    assert not (runs / jobs.LOCK).exists() and not jobs.job_status(runs).running


# ---- through the app ----------------------------------------------------------------------------------

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from tests._server import connect, wait_ready  # noqa: E402
from tests.test_hostile_uploads import launch  # noqa: E402
from tests.test_studio import write_tiny_bundle  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("train-app")
    write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    (root / "data" / "horses").mkdir(parents=True)
    (root / "data" / "escape").symlink_to("/etc", target_is_directory=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    url, demo = launch(root, data_root=root / "data")
    try:
        yield url, root
    finally:
        jobs.stop_job(root / "runs")
        demo.close()
        torch.set_num_threads(before)


def test_app_refuses_hostile_training_requests(served, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = served
    spawned: list[Any] = []
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: spawned.append(a))
    client = connect(url)
    good = dict(program="gan", dataset="horses", size=32, iters=10, ablation="E", unet_steps=10, threads=1)
    for bad in [dict(dataset="escape"), dict(dataset="../etc"), dict(dataset="/etc"),
                dict(dataset="synthetic; rm -rf /"), dict(dataset="$(id)"), dict(program="gan; rm -rf /"),
                dict(ablation="F"), dict(size=48), dict(size=10**9), dict(iters=-1), dict(iters=10**12),
                dict(unet_steps=0), dict(threads=10**6), dict(threads=-1)]:
        with pytest.raises(AppError):
            client.predict(**{**good, **bad}, api_name="/train_start")
    for name in ("..", "/etc", "../../etc/passwd", ".studio-job.json"):
        with pytest.raises(AppError):
            client.predict(name, api_name="/train_resume")
        with pytest.raises(AppError):
            client.predict(name, api_name="/train_load")
    assert not spawned
    runs = root / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    assert "no training job" in client.predict(api_name="/train_stop")


def test_training_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ELGAN_STUDIO_TRAIN=0 (or --no-train) anywhere: the tab is hidden and the endpoints refuse."""
    import app

    monkeypatch.setenv("ELGAN_STUDIO_TRAIN", "0")
    assert app.parse_args([]).no_train
    write_tiny_bundle(tmp_path / "checkpoints" / "default.safetensors")
    url, demo = launch(tmp_path, allow_training=False)
    spawned: list[Any] = []
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: spawned.append(a))
    try:
        client = connect(url)
        with pytest.raises(AppError, match="disabled"):
            client.predict("gan", "synthetic", 32, 10, "E", 10, 1, api_name="/train_start")
        with pytest.raises(AppError):
            client.predict("00000-gan-synthetic-32-E", api_name="/train_resume")
    finally:
        demo.close()
    assert not spawned


# ---- who may train: a Hugging Face Space is off by default, then an allow-list ----------------------

SPACE = {"SPACE_ID": "someone/elgan-studio", "SYSTEM": "spaces"}


def test_training_policy_from_the_environment() -> None:
    own = access.train_access({})
    assert own.offered and not own.restricted and own.allows(None) and own.allows("anyone")
    for env, no_train in (({"ELGAN_STUDIO_TRAIN": "0"}, False), ({}, True), ({**SPACE, "ELGAN_STUDIO_TRAIN": "0"},
                                                                             False)):
        off = access.train_access(env, no_train=no_train)
        assert not off.offered and "disabled" in off.refusal("alice")
    for space in (SPACE, {"SPACE_ID": "a/b"}, {"SYSTEM": "spaces"}):  # a Space: off unless switched on
        policy = access.train_access(space)
        assert not policy.offered and not policy.allows(None) and not policy.allows("alice")
        assert "ELGAN_STUDIO_TRAIN=1" in policy.refusal(None)
    nobody = access.train_access({**SPACE, "ELGAN_STUDIO_TRAIN": "1"})  # on, but no allow-list
    assert nobody.offered and nobody.restricted and not nobody.allows("alice") and not nobody.allows(None)
    assert "ELGAN_STUDIO_TRAIN_USERS" in nobody.refusal("alice") and "ELGAN_STUDIO_TRAIN_USERS" in nobody.why
    listed = access.train_access({**SPACE, "ELGAN_STUDIO_TRAIN": "1", "ELGAN_STUDIO_TRAIN_USERS": " Alice, bob,,"})
    assert listed.users == {"alice", "bob"} and listed.allows("alice") and listed.allows("ALICE")
    assert listed.allows("bob") and not listed.allows("mallory") and not listed.allows(None)
    assert "sign in" in listed.refusal(None) and "mallory may not train" in listed.refusal("mallory")
    assert not listed.login, "no sign-in button without the Space's OAuth set up"
    elsewhere = access.train_access({"ELGAN_STUDIO_TRAIN_USERS": "alice"})  # a list limits training anywhere
    assert elsewhere.allows("alice") and not elsewhere.allows(None)


def test_visitors_see_names_never_paths_or_pids(tmp_path: Path) -> None:
    assert access.data_label("folder:.carry/weizmann_horse") == "folder:weizmann_horse"
    assert access.data_label("folder:/srv/secret/place/horses/") == "folder:horses"
    assert access.data_label("real:cub:/data/CUB_200_2011") == "real:cub:CUB_200_2011"
    assert access.data_label("synthetic") == "synthetic"
    runs = tmp_path / "runs"
    run = runs / "00003-gan-horses-32-E"
    run.mkdir(parents=True)
    (run / jobs.OUTPUT).write_text(f"training on folder:{tmp_path}/data/horses\nsaved {run}/best.safetensors\n"
                                   f'  File "/usr/lib/python3/site-packages/torch/nn/module.py", line 1\n'
                                   "loss 0.5 at 12 img/s, step 3/10\n")
    tail = jobs.output_tail(run)
    assert str(tmp_path) not in tail and "/usr/lib" not in tail, tail
    assert "00003-gan-horses-32-E/best.safetensors" in tail and "module.py" in tail and "12 img/s" in tail
    for st in (jobs.JobStatus(True, run, pid=4242, message="running"),
               jobs.JobStatus(False, run, pid=4242, returncode=0, message="finished")):
        for line in (progress.status_line(st, "GAN step 3"), progress.job_line(st, "gan")):  # job_line: + stage
            assert "4242" not in line and "pid" not in line and str(tmp_path) not in line and run.name in line
    from elgan.bundle import save_model_bundle
    from elgan.config import GeneratorConfig, PerturbConfig
    from elgan.nets.generator import LayeredGenerator
    from elgan.studio.registry import ModelRegistry

    bundle = tmp_path / "checkpoints" / "horse.safetensors"
    bundle.parent.mkdir()
    metrics = {"acc": 0.5, "iou": 0.3, "miou": 0.4, "data": f"folder:{tmp_path}/.carry/weizmann_horse",
               "split": "test"}
    save_model_bundle(bundle, LayeredGenerator(GeneratorConfig(size=32, width=4)).eval(), None, PerturbConfig(),
                      metadata={"metrics": metrics})
    registry = ModelRegistry(tmp_path / "checkpoints", runs)
    card = registry.describe(str(bundle.resolve()))
    assert "folder:weizmann_horse [test]" in card and str(tmp_path) not in card and ".carry" not in card
    with pytest.raises(ModelError) as refused:
        registry.get(str(tmp_path / "elsewhere" / "x.safetensors"))
    assert str(tmp_path) not in str(refused.value)


def _pids_and_paths(text: str, root: Path) -> list[str]:
    return [bad for bad in (str(root), "pid", str(os.getpid())) if bad in text]


def test_space_hides_training_and_refuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app on a Space with no training settings: tab hidden, every training endpoint refuses, no run
    is listed in the page."""
    write_tiny_bundle(tmp_path / "checkpoints" / "default.safetensors")
    secret = tmp_path / "runs" / "00007-gan-secret-32-E"
    secret.mkdir(parents=True)
    (secret / jobs.RUN_INFO).write_text(json.dumps({"settings": asdict(jobs.TrainSettings())}))
    url, demo = launch(tmp_path, access=access.train_access(SPACE))
    spawned: list[Any] = []
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: spawned.append(a))
    try:
        config = wait_ready(url)
        tab = next(c for c in config["components"] if c.get("props", {}).get("id") == "train")
        assert tab["props"].get("visible") is False
        assert secret.name not in json.dumps(config), "the run list is not in the page"
        client = connect(url)
        with pytest.raises(AppError, match="disabled"):
            client.predict("gan", "synthetic", 32, 10, "E", 10, 1, api_name="/train_start")
        for api in ("/train_resume", "/train_load"):  # the run is not even a choice of this page
            with pytest.raises(AppError, match="disabled|not in the list of choices"):
                client.predict(secret.name, api_name=api)
        with pytest.raises(AppError, match="disabled"):
            client.predict(None, api_name="/train_load")
        with pytest.raises(AppError, match="disabled"):
            client.predict(api_name="/train_stop")
        status, tail, *_ = client.predict(None, api_name="/train_poll")
        assert secret.name not in status and not tail and "not available" in status
    finally:
        demo.close()
    assert not spawned


def test_space_with_an_allow_list_lets_only_listed_users_train(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ELGAN_STUDIO_TRAIN=1 and ELGAN_STUDIO_TRAIN_USERS=alice on a Space: alice may start a job, mallory
    (signed in) may neither start nor stop it nor see the runs; nobody sees a pid or a server path. The
    user name comes from gradio's login here (Hugging Face sign-in fills the same field on a Space)."""
    write_tiny_bundle(tmp_path / "checkpoints" / "default.safetensors")
    runs = tmp_path / "runs"
    policy = access.train_access({**SPACE, "ELGAN_STUDIO_TRAIN": "1", "ELGAN_STUDIO_TRAIN_USERS": "alice"})
    calls: list[Any] = []

    class FakeProcess:
        pid = os.getpid()  # alive, so the job reads as running; never signalled (the lock is removed by hand)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(jobs.subprocess, "Popen", lambda argv, **kw: calls.append(argv) or FakeProcess())
    monkeypatch.setattr(jobs, "_reap", lambda *a: None)
    monkeypatch.setattr(jobs, "stop_job", lambda *a: pytest.fail("Stop reached the job"))
    import app
    from elgan.studio.registry import ModelRegistry
    from tests._server import launch as launch_demo

    demo = app.build_demo(ModelRegistry(tmp_path / "checkpoints", runs), runs, None, access=policy)
    url = launch_demo(demo, auth=[("alice", "alice-pw"), ("mallory", "mallory-pw")])
    try:
        mallory = connect(url, auth=("mallory", "mallory-pw"))
        with pytest.raises(AppError, match="mallory may not train"):
            mallory.predict("gan", "synthetic", 32, 10, "E", 10, 1, api_name="/train_start")
        assert not calls and (not runs.exists() or not any(runs.iterdir()))
        alice = connect(url, auth=("alice", "alice-pw"))
        status, run = alice.predict("gan", "synthetic", 32, 10, "E", 10, 1, api_name="/train_start")
        run = run.get("value") if isinstance(run, dict) else run
        assert len(calls) == 1 and "Running" in status and run in status and not _pids_and_paths(status, tmp_path)
        with pytest.raises(AppError, match="mallory may not train"):
            mallory.predict(api_name="/train_stop")
        with pytest.raises(AppError, match="mallory may not train|not in the list of choices"):
            mallory.predict(run, api_name="/train_resume")  # mallory's page does not even list it
        with pytest.raises(AppError, match="mallory may not train"):
            mallory.predict(None, api_name="/train_load")
        seen, tail, *_ = mallory.predict(None, api_name="/train_poll")
        assert "not available" in seen and run not in seen and not tail
        polled, tail, *_ = alice.predict(run, api_name="/train_poll")
        assert run in polled and not _pids_and_paths(polled + tail, tmp_path)
        names = alice.predict(api_name="/train_view")[1]
        assert run in json.dumps(names) and run not in json.dumps(mallory.predict(api_name="/train_view")[1])
    finally:
        (runs / jobs.LOCK).unlink(missing_ok=True)
        demo.close()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
