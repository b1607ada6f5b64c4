"""The app served in-process for tests, and clients that wait for it to be ready.

On a busy machine (CI, or training runs beside the tests) a freshly launched server can take many
seconds to answer its first request, and gradio_client's own fetch of /config gives up after httpx's
default 5 s. So every test that talks to a server goes through here: :func:`serve` returns only once
the server answers, :func:`connect` builds a Client with generous timeouts, and :func:`wait_ready`
polls with an overall deadline (READY_S) instead of trusting one short request; :func:`raw_call`
sends one event as a browser does.
"""

from __future__ import annotations

import inspect
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

READY_S = 120.0  # overall deadline for a server to answer at all
HTTP_S = 120.0  # any single request (gradio's queue streams send a heartbeat every 15 s, so this is idle time)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, deadline_s: float = READY_S) -> dict[str, Any]:
    """Poll `url`config until the server answers it (returns the config); AssertionError after the deadline."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{url} did not answer within {deadline_s:.0f} s (last: {last!r})")
        try:
            r = httpx.get(url + "config", timeout=min(30.0, max(1.0, left)))
            if r.status_code == 200:
                return r.json()
            if r.status_code == 401:  # an app behind a login answers, but shows its config to users only
                return {}
            last = r.status_code
        except httpx.TransportError as exc:  # not listening yet, or too busy to answer in time
            last = exc
        time.sleep(0.25)


def launch(demo: Any, **options: Any) -> str:
    """Launch a built gr.Blocks on a free port in this process; returns its URL once it answers.

    Gradio's own check that the page answers (a few 3 s requests) is skipped where it can be: on a busy
    machine it fails before the server is ready; wait_ready's deadline replaces it."""
    import app

    options = {**app.LAUNCH_OPTIONS, **options}
    if "_frontend" in inspect.signature(demo.launch).parameters:
        options.setdefault("_frontend", False)
    last: Exception | None = None
    for _ in range(3):  # gradio allows its server 5 s to start; a busy machine may need another try
        port = free_port()
        try:
            demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **options)
        except OSError as exc:  # gradio's "cannot find empty port" when its start timed out
            last = exc
            continue
        url = f"http://127.0.0.1:{port}/"
        wait_ready(url)
        return url
    raise AssertionError(f"the app did not start: {last}")


def serve(root: Path, **build: Any) -> tuple[str, Any]:
    """The app on the bundles in root/checkpoints (runs under root/runs), ready; returns (url, demo)."""
    import app
    from studio.registry import ModelRegistry

    registry = ModelRegistry(root / "checkpoints", root / "runs")
    demo = app.build_demo(registry, root / "runs", build.pop("data_root", None), **build)
    return launch(demo), demo


def connect(url: str, **kw: Any) -> Any:
    """A gradio_client Client for `url`, made once the server answers, with timeouts for a busy machine."""
    from gradio_client import Client

    wait_ready(url)
    kw.setdefault("verbose", False)
    kw.setdefault("httpx_kwargs", {"timeout": httpx.Timeout(HTTP_S)})
    return Client(url, **kw)


def raw_call(base: str, api_name: str, data: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One event through Gradio's queue as a browser sends it (state slots included, None); returns the
    final message and every message before it (warnings arrive as "log" messages)."""
    config = wait_ready(base)
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    session = uuid.uuid4().hex
    messages = []
    with httpx.Client(base_url=base, timeout=HTTP_S) as http:
        http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session,
                                                  "event_data": None, "trigger_id": None}).raise_for_status()
        with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    messages.append(msg)
                    if msg.get("msg") == "process_completed":
                        return msg, messages
    raise AssertionError(f"no completion: {messages}")
