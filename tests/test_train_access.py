"""The Train tab through the running app: hostile training requests refused before any process starts,
training switched off, who may train (a Hugging Face Space is off by default, then an allow-list) and what
a visitor sees of the server (names, never paths or process ids). Job control alone (settings, argv,
run names, Stop ending the process group): tests/test_train_tab_security.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from studio import access, jobs, progress
from studio.registry import ModelError
from tests.test_studio import write_tiny_bundle

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from tests._server import connect, serve, wait_ready  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("train-app")
    write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    (root / "data" / "horses").mkdir(parents=True)
    (root / "data" / "escape").symlink_to("/etc", target_is_directory=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    url, demo = serve(root, data_root=root / "data")
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
                dict(unet_steps=0), dict(threads=10**6), dict(threads=-1), dict(d_width=-1), dict(d_width=10**6),
                dict(d_width="16; rm -rf /")]:
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
    url, demo = serve(tmp_path, allow_training=False)
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
    from studio.registry import ModelRegistry

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
    url, demo = serve(tmp_path, access=access.train_access(SPACE))
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
    from studio.registry import ModelRegistry
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
