"""The app launched in-process and driven through gradio_client, endpoint by endpoint (CPU, ~1 min)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from studio.registry import ModelRegistry  # noqa: E402
from tests._server import HTTP_S, connect, launch, wait_ready  # noqa: E402
from tests.test_studio import write_tiny_bundle  # noqa: E402

EXPLORE_DEFAULTS = dict(seed=3, z0=0, z1=0, z2=0, z3=0, z4=0, c=12, tx=0, ty=0, rotation=0, scale=0, compare=False)


@pytest.fixture(scope="module")
def app_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path, Any]]:
    """The app on a tiny bundle, served: (url, root, the default bundle, the gr.Blocks)."""
    root = tmp_path_factory.mktemp("app")
    default = write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    (root / "checkpoints" / "broken.safetensors").write_bytes(b"not a bundle")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    registry = ModelRegistry(root / "checkpoints", root / "runs")
    demo = app.build_demo(registry, root / "runs", None)
    url = launch(demo)  # returns once the server answers (a busy machine may take long)
    try:
        yield url, root, default, demo
    finally:
        from studio import jobs

        jobs.stop_job(root / "runs")
        demo.close()
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def served(app_demo) -> tuple[str, Path, Path]:
    return app_demo[:3]


@pytest.fixture()
def client(served) -> Client:
    return connect(served[0])


def _value(x: Any) -> Any:
    """A component update arrives as {"__type__": "update", "value": ...}; a plain value as itself."""
    return x.get("value") if isinstance(x, dict) and x.get("__type__") == "update" else x


def _png(path: str) -> np.ndarray:
    assert path.endswith(".png")
    return np.asarray(Image.open(path))


def test_every_event_is_named(served) -> None:
    api = connect(served[0]).view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert {"/explore", "/grid", "/strip", "/segment", "/select_model", "/c_to_csup", "/csup_to_c",
            "/train_start", "/train_stop", "/train_resume", "/train_poll", "/train_load", "/train_view",
            "/train_show_counts"} <= names
    assert not api["unnamed_endpoints"]


def test_the_endpoints_clients_use_keep_their_names_and_parameters(served) -> None:
    """Every named endpoint, and the parameters of the code links and the live view, as clients call them."""
    api = connect(served[0]).view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(api) == {f"/{n}" for n in (
        "explore", "show_compare", "c_to_csup", "csup_to_c", "random_seed", "grid", "strip", "select_model",
        "refresh_models", "segment", "random_background", "invert_photo", "edit_photo", "photo_c_to_csup",
        "photo_csup_to_c", "train_start", "train_stop", "train_resume", "train_poll", "train_load",
        "train_show_counts", "train_view")}

    def params(name: str) -> list[str]:
        return [p["parameter_name"] for p in api[f"/{name}"]["parameters"]]

    assert params("explore") == list(EXPLORE_DEFAULTS)
    assert params("c_to_csup") == params("photo_c_to_csup") == ["c"]
    assert params("csup_to_c") == params("photo_csup_to_c") == ["c_sup", "c"]
    assert len(api["/explore"]["returns"]) == 7 and len(api["/segment"]["returns"]) == 6


def test_bounded_queue_and_cache_expiry(app_demo) -> None:
    """A public Space under load: a bounded queue (one more request is refused at once, and the page says the
    app is busy), every queued event a few at a time, Gradio's cache expiring, no run history in browsers."""
    url, _, _, demo = app_demo
    assert demo._queue.max_size == app.QUEUE_SIZE and 0 < app.QUEUE_SIZE <= 64
    every, age = demo.delete_cache
    assert (every, age) == app.CACHE_EXPIRY and 0 < every <= age <= 2 * 3600
    limits = {fn.api_name: fn.concurrency_limit for fn in demo.fns.values() if fn.queue}
    assert demo._queue.default_concurrency_limit == 2
    assert all(limit == "default" or 1 <= limit <= 2 for limit in limits.values()), limits
    assert limits["segment"] == limits["invert_photo"] == limits["train_start"] == 1
    assert wait_ready(url)["run_history"] is False  # a launch option: as the browser sees it


def test_expired_outputs_are_deleted_with_their_folders(app_demo) -> None:
    """The outputs of /explore are tracked by Gradio's cache expiry; the app's sweep (installed into Gradio)
    deletes them and their hash-named folders, keeps the examples, and the same picture is written anew."""
    from gradio import route_utils

    url, _, _, demo = app_demo
    client = connect(url, download_files=False)
    first = client.predict(**{**EXPLORE_DEFAULTS, "seed": 77}, api_name="/explore")
    paths = [Path(o["path"]) for o in first[:5]]
    assert all(p.is_file() for p in paths)
    examples = {f for b in demo.blocks.values() for f in getattr(b, "keep_in_cache", ())}
    route_utils.delete_files_created_by_app(demo, 0)  # what Gradio's timer calls: every file older than 0 s
    assert not any(p.exists() or p.parent.exists() for p in paths)
    assert examples and all(Path(f).is_file() for f in examples)  # the examples stay
    again = client.predict(**{**EXPLORE_DEFAULTS, "seed": 77}, api_name="/explore")
    assert [Path(o["path"]) for o in again[:5]] == paths and all(p.is_file() for p in paths)


def test_train_settings_follow_the_program(client: Client) -> None:
    """GAN iterations, U-Net steps, the ablation letter, D's width and the U-Net encoder show only for the
    programs that use them."""
    shown = {p: [u.get("visible") for u in client.predict(p, api_name="/train_show_counts")]
             for p in ("gan", "unet", "pipeline")}
    assert shown == {"gan": [True, False, True, True, False], "unet": [False, True, False, False, True],
                     "pipeline": [True, True, False, True, True]}


def test_explore(client: Client) -> None:
    # the live views come at the model's native size (the tiny bundle's 32 px; the browser scales them up)
    bg, fg, mask, image, cutout, cmp, caption = client.predict(**EXPLORE_DEFAULTS, api_name="/explore")
    assert [_png(p).shape for p in (bg, fg, mask, image, cutout)] == [(32, 32, 3)] * 4 + [(32, 32, 4)]
    assert cmp is None and "shape group **1**" in caption and "c_sup = c // 10 = 1" in caption
    *_, cmp, caption = client.predict(**{**EXPLORE_DEFAULTS, "tx": 2.0, "compare": True}, api_name="/explore")
    assert _png(cmp).shape == (32, 3 * 32 + 8, 3) and "difference" in caption
    assert client.predict(37, api_name="/c_to_csup") == 3
    assert client.predict(c_sup=7, c=37, api_name="/csup_to_c") == 77
    with pytest.raises(AppError, match="maximum"):  # Gradio checks slider bounds
        client.predict(**{**EXPLORE_DEFAULTS, "tx": 5.0}, api_name="/explore")


def test_grid_and_strip(client: Client) -> None:
    grid = _png(client.predict(seed=1, c=5, mode="vary c_sup, fix z", api_name="/grid"))
    assert grid.shape == ((4 * 34 + 2) * 4, (8 * 34 + 2) * 4, 3)
    strip, caption = client.predict(seed=1, z0=0, z1=0, z2=0, z3=0, z4=0, c=5, direction="rotation",
                                    with_true=True, api_name="/strip")
    assert _png(strip).shape[1] == (9 * 34 + 2) * 4 and "[-1, 1]" in caption


def test_bad_model_keeps_the_previous_one(served, client: Client) -> None:
    url, root, default = served
    selected, *_ = client.predict("broken.safetensors", api_name="/select_model")  # a public key
    assert _value(selected) == "default.safetensors"
    with pytest.raises(AppError, match="not in the list of choices"):  # a server path is not a value
        client.predict(str(default.resolve()), api_name="/select_model")
    client.predict(**EXPLORE_DEFAULTS, api_name="/explore")  # still serving the previous model


def test_the_page_names_models_by_key_not_by_server_path(served) -> None:
    """The selector's values (in the page's config) are public keys; no path of the checkpoints folder."""
    import json

    url, root, _ = served
    config = wait_ready(url)
    text = json.dumps(config)
    assert str((root / "checkpoints").resolve()) not in text and str(root.resolve()) not in text
    selector = next(c["props"] for c in config["components"] if c.get("props", {}).get("label") == "Model")
    assert [value for _, value in selector["choices"]] == ["default.safetensors", "broken.safetensors", "untrained"]
    assert selector["value"] == "default.safetensors"


def test_segment(served, client: Client, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    rgba = np.random.default_rng(0).integers(0, 255, (90, 120, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(photo)
    mask, overlay, cutout, replaced, caption, warning = _segment(client, photo)
    assert _png(mask).shape == (90, 120, 3) and _png(overlay).shape == (90, 120, 3)
    assert _png(cutout).shape == (90, 120, 4) and _png(replaced).shape == (90, 120, 3)
    assert "120×90" in caption and warning == ""  # the tiny bundle stores no statistics: no check, no warning
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(AppError, match="not a readable image"):
        _segment(client, junk)
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (21 * 1024**2))
    with pytest.raises(Exception):  # noqa: B017 -- refused at upload by max_file_size, before any handler
        _segment(client, huge)
    client.predict(**EXPLORE_DEFAULTS, api_name="/explore")  # the app keeps serving


def _segment(client: Client, path: Path) -> tuple[Any, ...]:
    return client.predict(handle_file(str(path)), 0.5, 1, api_name="/segment")


def _wait(client: Client, run: str, until: str, timeout: float = 300.0) -> str:
    """Poll like the page's timer until the status says `until` (generous: CI machines may be busy)."""
    deadline = time.monotonic() + timeout
    status, tail = "", ""
    while time.monotonic() < deadline:
        status, tail, *_ = client.predict(run, api_name="/train_poll")
        if until in status:
            return status
        if until != "Running" and ("failed" in status or "ended" in status):
            break
        time.sleep(0.5)
    raise AssertionError(f"no {until!r} within {timeout} s; last status: {status}\noutput:\n{tail}")


@pytest.mark.slow
def test_train_finish_load_stop_resume(served, client: Client) -> None:
    url, root, default = served
    status, run = client.predict("gan", "synthetic", 32, 5, "E", 5, 1, d_width=8, api_name="/train_start")
    run = _value(run)
    assert "Running" in status and run.startswith("00000-gan-synthetic-32-E")
    with pytest.raises(AppError, match="already running"):
        client.predict("gan", "synthetic", 32, 5, "E", 5, 1, api_name="/train_start")
    final = _wait(client, run, "finished")
    assert "GAN: 5 steps" in final
    argv = json.loads((root / "runs" / run / "studio.json").read_text())["argv"]
    assert argv[argv.index("--d-width") + 1] == "8"  # the tab's D width reached the program ...
    assert json.loads((root / "runs" / run / "config.json").read_text())["discriminator"]["width"] == 8  # ... its D
    poll = client.predict(run, api_name="/train_poll")
    assert "finished" in poll[0]
    model, info = client.predict(run, api_name="/train_load")
    assert _value(model) == f"{run}/best.safetensors" and "U-Net: no" in info  # the result's public key
    client.predict(**EXPLORE_DEFAULTS, api_name="/explore")  # now explores the new model

    # U-Net for the model just loaded (the session's selection), assembled into a bundle with its GAN
    status, unet_run = client.predict("unet", "synthetic", 32, 5, "E", 5, 1, api_name="/train_start")
    unet_run = _value(unet_run)
    _wait(client, unet_run, "finished")
    model, info = client.predict(unet_run, api_name="/train_load")
    assert _value(model) == f"{unet_run}/bundle.safetensors" and "U-Net: yes" in info

    status, long_run = client.predict("gan", "synthetic", 32, 5000, "C", 5, 1, api_name="/train_start")
    long_run = _value(long_run)
    _wait(client, long_run, "Running")
    stopped = client.predict(api_name="/train_stop")
    assert "stopped" in stopped and not (root / "runs" / ".studio-job.json").exists()
    status, again = client.predict(long_run, api_name="/train_resume")
    assert _value(again) == long_run and "Running" in status
    assert "stopped" in client.predict(api_name="/train_stop")
    with pytest.raises(AppError, match="no result"):
        client.predict(long_run, api_name="/train_load")


def test_segment_refuses_paths_not_uploaded(served) -> None:
    """preprocess=False hands the handler Gradio's file dict, but only after Gradio checked the file is an
    upload: a client naming a server path directly gets an error, never the file."""
    import json
    import uuid

    import httpx

    base = served[0]
    config = wait_ready(base)
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "segment")
    session = uuid.uuid4().hex
    payload = {"path": "/etc/passwd", "orig_name": "passwd.png", "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(base_url=base, timeout=HTTP_S) as http:
        http.post("gradio_api/queue/join", json={"data": [None, payload, 0.5, 0], "fn_index": fn,
                                                  "session_hash": session, "event_data": None,
                                                  "trigger_id": None}).raise_for_status()
        with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            done = next(json.loads(line[5:]) for line in stream.iter_lines()
                        if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed")
    assert done["success"] is False and "root:" not in json.dumps(done)


def test_an_app_on_a_model_with_one_super_category_builds(tmp_path: Path) -> None:
    # a single-class collection trained with --gan-categories 10 --gan-group-size 10: c_sup has one value,
    # and Gradio refuses a slider with minimum == maximum
    from elgan.bundle import save_model_bundle
    from elgan.config import GeneratorConfig, PerturbConfig
    from elgan.nets.generator import LayeredGenerator
    from studio import ui

    g = LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=10, group_size=10)).eval()
    save_model_bundle(tmp_path / "checkpoints" / "default.safetensors", g, None, PerturbConfig())
    registry = ModelRegistry(tmp_path / "checkpoints", tmp_path / "runs")
    demo = app.build_demo(registry, tmp_path / "runs", None)
    handlers = {fn.api_name: fn.fn for fn in demo.fns.values()}
    for prefix in ("", "photo_"):  # a c_sup past the one group (the locked slider's 1) stays in it
        assert handlers[f"{prefix}c_to_csup"]("default.safetensors", 7) == 0
        assert handlers[f"{prefix}csup_to_c"]("default.safetensors", 1, 7) == 7
    locked = ui.code_slider(1, 3)
    assert (locked.minimum, locked.maximum, locked.value, locked.interactive) == (0, 1, 0, False)
    free = ui.code_slider(20, 25)
    assert (free.maximum, free.value, free.interactive) == (19, 19, True)
