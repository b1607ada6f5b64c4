"""Latency of the app as people feel it: one slider move on the Explore tab, one segmentation.

    python benchmarks/bench_app_latency.py                        # checkpoints' default bundle (or the fallback)
    python benchmarks/bench_app_latency.py --checkpoint runs/X/bundle.safetensors --moves 100

Launches the app in-process on a free port and measures, over `--moves` slider moves (c, a z offset and
an eps direction in turn, like a drag):

* gradio_client   Client.predict on /explore, outputs downloaded (the brief's measure) and not;
                  note gradio_client polls its message queue every 50 ms, which it adds to every call;
* web protocol    what the browser does: POST queue/join, read the SSE stream, fetch the images;
* handler         the Python work alone (render + native-size arrays, as the app sends them), no HTTP;
* client cost     what gradio_client pays per downloaded file for a new httpx client (SSL context).

and the same for /segment on a 1024x768 photo. Prints a Markdown table with the date and the machine.
What a person sees in a browser, against a no-op Gradio app: bench_explore_vs_noop.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moves(n: int) -> list[dict[str, float]]:
    """n slider positions: c, z[0] and eps tx move in turn, as a user would (each call a new state).

    A move of c reuses the cached background (G_b sees z only); moves of z[0] and tx recompute everything.
    """
    state: dict[str, float] = {"c": 20, "z0": 0.0, "tx": 0.0}
    out = []
    for i in range(n):
        key, j = ("c", "z0", "tx")[i % 3], i // 3
        state[key] = 20 + j % 150 if key == "c" else round(-2.5 + (j % 50) * 0.1, 2)
        out.append(dict(state))
    return out


def explore_args(m: dict[str, float], seed: int) -> list[float | bool]:
    """/explore's inputs: seed, z[0..4] offsets, c, eps tx, ty, rotation, scale, compare."""
    return [seed, m["z0"], 0, 0, 0, 0, m["c"], m["tx"], 0, 0, 0, False]


def stats(ts: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1000 for t in ts)
    return statistics.median(ms), ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def web_protocol(base: str, api_name: str, make_data: Callable[[int], list], n: int) -> list[float]:
    """The browser's round trip: queue/join, SSE until process_completed, then fetch every output file."""
    import httpx

    config = httpx.get(base + "config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    session = uuid.uuid4().hex
    out = []
    with httpx.Client(base_url=base, timeout=60) as http, ThreadPoolExecutor(6) as pool:
        for i in range(n):
            t = time.perf_counter()
            http.post("gradio_api/queue/join", json={"data": make_data(i), "fn_index": fn, "session_hash": session,
                                                      "event_data": None, "trigger_id": None}).raise_for_status()
            data = None
            with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        msg = json.loads(line[5:])
                        if msg.get("msg") == "process_completed":
                            data = msg["output"].get("data")
                            break
            if data is None:
                raise RuntimeError(f"{api_name} failed: {msg}")
            urls = [d["url"] for d in data if isinstance(d, dict) and d.get("url")]
            list(pool.map(lambda u: http.get(u).raise_for_status(), urls))  # the page fetches them in parallel
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="bundle to measure (default: as the app picks)")
    p.add_argument("--moves", type=int, default=100)
    p.add_argument("--segments", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the app's default is 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from gradio_client import Client, handle_file

    import app
    from studio import render, segment
    from studio.registry import ModelRegistry

    root = Path(__file__).resolve().parents[1]
    registry = ModelRegistry(root / "checkpoints", None, extra=[args.checkpoint] if args.checkpoint else None)
    model = registry.default()
    demo = app.build_demo(registry, Path(tempfile.mkdtemp(prefix="bench-runs-")), None, default_model=model)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **app.LAUNCH_OPTIONS)
    base = f"http://127.0.0.1:{port}/"
    seq = moves(args.moves)
    rows: list[tuple[str, float, float, int]] = []
    try:
        with_dl, no_dl = Client(base, verbose=False), Client(base, verbose=False, download_files=False)
        for client in (with_dl, no_dl):  # warm up: first calls allocate, open connections
            for m in seq[:5]:
                client.predict(*explore_args(m, 0), api_name="/explore")
        # each measure uses its own seed so that none is served from another's cache
        for name, client, seed in (("outputs downloaded", with_dl, 1), ("URLs only", no_dl, 2)):
            it = iter(seq)
            rows.append((f"explore, gradio_client, {name}",
                         *stats(timed(lambda c=client, s=seed, it=it: c.predict(*explore_args(next(it), s),
                                                                               api_name="/explore"), len(seq))),
                         len(seq)))
        # gradio_client 2.x opens a new httpx client (a fresh SSL context, CA bundle loaded) for every file
        # it downloads; an API user can keep one connection instead: URLs from the client, bytes over it
        import httpx

        with httpx.Client(timeout=60) as http:
            def urls_then_fetch(m: dict[str, float]) -> None:
                out = no_dl.predict(*explore_args(m, 5), api_name="/explore")
                for item in out:
                    if isinstance(item, dict) and item.get("url"):
                        http.get(item["url"]).raise_for_status()

            it = iter(seq)
            rows.append(("explore, gradio_client URLs + files over one kept-alive connection",
                         *stats(timed(lambda: urls_then_fetch(next(it)), len(seq))), len(seq)))
        rows.append(("explore, web protocol (SSE + parallel image fetch)",
                     *stats(web_protocol(base, "explore", lambda i: [None, *explore_args(seq[i], 3)], len(seq))),
                     len(seq)))

        def handler(m: dict[str, float]) -> None:
            layers = render.render_layers(registry, model, 4, (m["z0"], 0, 0, 0, 0), int(m["c"]), {"tx": m["tx"]})
            render.layer_views(layers, target=None)  # as the app sends them: native size

        it = iter(seq)
        rows.append(("explore, handler only (no HTTP)", *stats(timed(lambda: handler(next(it)), len(seq))),
                     len(seq)))

        m = registry.get(model)
        if m.unet is None:
            print(f"note: {model} has no U-Net; segmentation not measured")
        else:
            from elgan.data.synthetic import render_synthetic

            # a photo-like picture (a held-out synthetic scene), 1024x768: PNG sizes as with real photos
            photo = Path(tempfile.mkdtemp(prefix="bench-")) / "photo.jpg"
            scene = Image.fromarray(render_synthetic("test", 0, 256)[0]).resize((1024, 1024), Image.Resampling.BICUBIC)
            scene.crop((0, 128, 1024, 896)).save(photo, quality=90)
            n = args.segments
            rows.append(("segment 1024x768, gradio_client (upload + outputs)",
                         *stats(timed(lambda: with_dl.predict(handle_file(str(photo)), 0.5, 1, api_name="/segment"),
                                      n)), n))

            def seg_handler() -> None:
                image = segment.read_upload(photo)
                s = segment.segment(m, image, 0.5)
                segment.replace_background(m, image, s.alpha, 1)

            rows.append(("segment 1024x768, handler only", *stats(timed(seg_handler, n)), n))
        import httpx

        rows.append(("one new httpx.Client() (what gradio_client creates per downloaded file)",
                     *stats(timed(lambda: httpx.Client().close(), 20)), 20))
    finally:
        demo.close()

    g = registry.get(model).generator.cfg
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"\n{dt.datetime.now().isoformat(timespec='minutes')} · {platform.node()} · {platform.machine()} "
          f"{os.cpu_count()} CPUs · load {load[0]:.2f} · torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s) · model {Path(model).name} ({g.size} px, width {g.width})\n")
    print("| measure | median ms | p95 ms | n |\n|---|---:|---:|---:|")
    for name, med, p95, count in rows:
        print(f"| {name} | {med:.1f} | {p95:.1f} | {count} |")
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak RSS of this process (app server, model and both clients): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
