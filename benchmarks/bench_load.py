"""Load test: many people at once on Explore and Segment. No errors, latency per endpoint, server memory.

    python benchmarks/bench_load.py                               # 20 clients, 60 s, as `python app.py` would
    python benchmarks/bench_load.py --clients 5 --seconds 15      # a quick look
    python benchmarks/bench_load.py --checkpoint runs/X/bundle.safetensors

Starts the app as its own process (`python app.py --no-train`, the public-Space setting, its Gradio cache
in a temporary folder) so that its memory is the server's alone. Then `--clients` gradio_client clients,
each in its own thread, alternate a slider move on /explore (random seed, c, z and eps, so that caches help
only as much as they would with real visitors) and a /segment of a photo upload, for `--seconds`. Meanwhile
the server's RSS is sampled from /proc every 0.5 s.

Prints a Markdown table: calls, errors, median / p95 / max latency per endpoint (queueing included: this is
what a visitor waits), throughput, and RSS at the start, peak and end with the growth between the second
and the last fifth of the run (the first fifth is warm-up), plus the Gradio cache's growth on disk. Exit
code 1 on any error or if RSS grew by more than --max-growth-mb.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024**2


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def make_photo(folder: Path) -> Path:
    """A photo-like 640x480 JPEG: a held-out synthetic scene, upscaled (no third-party image)."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from elgan.data.synthetic import render_synthetic

    scene = Image.fromarray(render_synthetic("test", 0, 128)[0]).resize((640, 640), Image.Resampling.BICUBIC)
    path = folder / "photo.jpg"
    scene.crop((0, 80, 640, 560)).save(path, quality=90)
    return path


def start_server(port: int, checkpoint: str | None, cache: Path) -> subprocess.Popen:
    argv = [sys.executable, "app.py", "--port", str(port), "--no-train", "--threads", "1"]
    if checkpoint:
        argv += ["--checkpoint", checkpoint]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the app exited with {server.returncode}:\n{server.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the app did not come up within 300 s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--checkpoint", default=None, help="bundle to serve (default: as the app picks)")
    p.add_argument("--max-growth-mb", type=float, default=50.0, help="RSS growth that counts as a leak")
    args = p.parse_args()

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    cache, downloads = work / "gradio-cache", work / "downloads"
    photo = make_photo(work)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(port, args.checkpoint, cache)
    samples: list[tuple[float, float]] = []
    results: list[tuple[str, float, str | None]] = []  # endpoint, seconds, error
    lock, stop = threading.Lock(), threading.Event()
    try:
        warm = Client(url, verbose=False, download_files=str(downloads))
        warm.predict(seed=0, api_name="/explore")
        warm.predict(handle_file(str(photo)), 0.5, 0, api_name="/segment")
        cache_before = folder_mb(cache)

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic(), rss_mb(server.pid)))
                stop.wait(0.5)

        def visitor(i: int, client: Client, start: threading.Barrier, deadline: list[float]) -> None:
            rng = random.Random(i)
            start.wait()
            n = 0
            while time.monotonic() < deadline[0]:
                endpoint = ("explore", "segment")[n % 2]
                n += 1
                t = time.perf_counter()
                error = None
                try:
                    if endpoint == "explore":
                        client.predict(seed=rng.randrange(100_000), z0=round(rng.uniform(-2, 2), 2),
                                       c=rng.randrange(200), tx=round(rng.uniform(-1, 1), 2),
                                       rotation=round(rng.uniform(-1, 1), 2), api_name="/explore")
                    else:
                        client.predict(handle_file(str(photo)), round(rng.uniform(0.3, 0.7), 2),
                                       rng.randrange(1000), api_name="/segment")
                except Exception as exc:  # every failure counts, whatever its kind
                    error = f"{type(exc).__name__}: {exc}"[:200]
                with lock:
                    results.append((endpoint, time.perf_counter() - t, error))

        clients = [Client(url, verbose=False, download_files=str(downloads / str(i))) for i in range(args.clients)]
        start, deadline = threading.Barrier(args.clients + 1), [0.0]
        threads = [threading.Thread(target=visitor, args=(i, c, start, deadline), daemon=True)
                   for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(1.0)  # the baseline: the server idle after its warm-up
        t0 = time.monotonic()
        deadline[0] = t0 + args.seconds
        start.wait()
        for t in threads:
            t.join(args.seconds + 300)
        wall = time.monotonic() - t0
        time.sleep(1.0)
        stop.set()
        sampler.join()
        cache_after = folder_mb(cache)
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print(f"\n{dt.datetime.now().isoformat(timespec='minutes')} · {platform.node()} · {os.cpu_count()} CPUs · "
          f"load {load[0]:.2f} · {args.clients} clients for {args.seconds:.0f} s (wall {wall:.0f} s) · model "
          f"{args.checkpoint or 'as the app picks (checkpoints/default.safetensors, else untrained)'}\n")
    print("| endpoint | calls | errors | median ms | p95 ms | max ms | calls/s |\n|---|---:|---:|---:|---:|---:|---:|")
    errors = [r for r in results if r[2]]
    for endpoint in ("explore", "segment"):
        ok = [s * 1000 for e, s, err in results if e == endpoint and not err]
        bad = sum(1 for e, _, err in results if e == endpoint and err)
        if ok:
            print(f"| {endpoint} | {len(ok) + bad} | {bad} | {statistics.median(ok):.0f} | {percentile(ok, 0.95):.0f} "
                  f"| {max(ok):.0f} | {len(ok) / wall:.1f} |")
        else:
            print(f"| {endpoint} | {bad} | {bad} | - | - | - | 0 |")
    during = [r for t, r in samples if t0 <= t <= t0 + wall]
    fifth = max(1, len(during) // 5)
    base = [r for t, r in samples if t < t0]
    # the first fifth is the allocators' own warm-up under load; a leak shows as growth after it
    settled = during[fifth:2 * fifth] or during[:fifth]
    growth = statistics.mean(during[-fifth:]) - statistics.mean(settled)
    print(f"\nserver RSS (MB): idle after warm-up {statistics.mean(base) if base else float('nan'):.0f} · first fifth "
          f"{statistics.mean(during[:fifth]):.0f} · second fifth {statistics.mean(settled):.0f} · peak "
          f"{max(during):.0f} · last fifth {statistics.mean(during[-fifth:]):.0f} · growth from the second to the "
          f"last fifth {growth:+.0f} ({len(samples)} samples)")
    print(f"Gradio cache on disk: {cache_before:.1f} MB after warm-up -> {cache_after:.1f} MB "
          f"({(cache_after - cache_before) / max(1, len(results) - len(errors)) * 1024:.0f} KB per call)")
    for e in sorted({err for _, _, err in errors})[:10]:
        print(f"error: {e}")
    leak = growth > args.max_growth_mb
    print("\nverdict: " + ("OK" if not errors and not leak else
                           f"{len(errors)} errors" + (f", RSS grew {growth:.0f} MB" if leak else "")))
    return 1 if errors or leak else 0


if __name__ == "__main__":
    sys.exit(main())
