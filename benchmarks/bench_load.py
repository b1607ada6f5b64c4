"""Load test: many people at once on Explore and Segment. No errors, latency per endpoint, server memory,
the Gradio cache on disk over time, requests the full queue refused.

    python benchmarks/bench_load.py                               # 20 clients, 60 s, as `python app.py` would
    python benchmarks/bench_load.py --clients 10 --seconds 30     # a quick look
    python benchmarks/bench_load.py --clients 12 --queue-size 4   # a flood: more visitors than the queue holds
    python benchmarks/bench_load.py --checkpoint runs/X/bundle.safetensors

Starts the app as its own process (`python app.py --no-train`, the public-Space setting, its Gradio cache
in a temporary folder) so that its memory is the server's alone. The app expires cached files as it always
does, but sooner (`--cache-expiry EVERY_S AGE_S`, 5 / 10 s here against 300 / 1800 s in the app) so that a
run of a minute shows the cache reaching its bound. Then `--clients` gradio_client clients, each in its own
thread, alternate a slider move on /explore (random seed, c, z and eps, so that caches help only as much as
they would with real visitors) and a /segment of a photo upload, for `--seconds`. Meanwhile the server's
RSS is sampled from /proc every 0.5 s, and the cache's size on disk (files and folders) every second.

Prints a Markdown table: calls, errors, requests refused because the queue was full (the page says "This
application is currently busy. Please try again."; not errors: the designed answer to a flood), median /
p95 / max latency per endpoint (queueing included: this is what a visitor waits), throughput; RSS at the
start, peak and end with the growth between the second and the last fifth of the run (the first fifth is
warm-up); the cache over time and whether it stayed bounded. Exit code 1 on any error, if RSS grew by more
than --max-growth-mb, or if the cache kept growing.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import start_server as start_process  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def disk_usage(path: Path) -> tuple[float, int, int]:
    """(MB on disk, files, folders) under `path`: blocks actually used, folders included (an empty folder
    takes a block too)."""
    used, files, folders = 0, 0, 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:  # swept meanwhile
            continue
        for e in entries:
            try:
                used += e.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:
                continue
            if e.is_dir(follow_symlinks=False):
                folders += 1
                stack.append(Path(e.path))
            else:
                files += 1
    return used / 1024**2, files, folders


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


def start_server(port: int, checkpoint: str | None, cache: Path, expiry: list[int], queue_size: int | None,
                 log: Path) -> subprocess.Popen:
    argv = [sys.executable, "app.py", "--port", str(port), "--no-train", "--threads", "1",
            "--cache-expiry", *map(str, expiry)]
    if checkpoint:
        argv += ["--checkpoint", checkpoint]
    if queue_size is not None:
        argv += ["--queue-size", str(queue_size)]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return start_process(argv, port, env, log, ROOT, name="the app")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--checkpoint", default=None, help="bundle to serve (default: as the app picks)")
    p.add_argument("--cache-expiry", type=int, nargs=2, default=[5, 10], metavar=("EVERY_S", "AGE_S"),
                   help="the app's cache expiry for this run (the app's default: 300 1800)")
    p.add_argument("--queue-size", type=int, default=None, help="the app's queue bound (default: the app's)")
    p.add_argument("--max-growth-mb", type=float, default=50.0, help="RSS growth that counts as a leak")
    args = p.parse_args()

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    cache, downloads = work / "gradio-cache", work / "downloads"
    photo = make_photo(work)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(port, args.checkpoint, cache, args.cache_expiry, args.queue_size, work / "server.log")
    samples: list[tuple[float, float]] = []  # time, RSS MB
    disk: list[tuple[float, float, int, int]] = []  # time, cache MB on disk, files, folders
    results: list[tuple[str, float, str | None]] = []  # endpoint, seconds, error ("rejected: ..." if refused)
    lock, stop = threading.Lock(), threading.Event()
    try:
        warm = Client(url, verbose=False, download_files=str(downloads))
        warm.predict(seed=0, api_name="/explore")
        warm.predict(handle_file(str(photo)), 0.5, 0, api_name="/segment")

        def sample() -> None:
            k = 0
            while not stop.is_set():
                samples.append((time.monotonic(), rss_mb(server.pid)))
                if k % 2 == 0:
                    disk.append((time.monotonic(), *disk_usage(cache)))
                k += 1
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
                    refused = type(exc).__name__ == "QueueError" or "Queue is full" in str(exc)
                    error = ("rejected: " if refused else "") + f"{type(exc).__name__}: {exc}"[:200]
                with lock:
                    results.append((endpoint, time.perf_counter() - t, error))
                if error and error.startswith("rejected"):
                    time.sleep(0.5)  # a visitor told "busy, try again" tries again a moment later

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
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    return report(args, results, samples, disk, t0, wall)


def report(args: argparse.Namespace, results: list[tuple[str, float, str | None]], samples: list[tuple[float, float]],
           disk: list[tuple[float, float, int, int]], t0: float, wall: float) -> int:
    load = os.getloadavg()
    every, age = args.cache_expiry
    print(f"\n{dt.datetime.now().isoformat(timespec='minutes')} · {platform.node()} · {os.cpu_count()} CPUs · "
          f"load {load[0]:.2f} · {args.clients} clients for {args.seconds:.0f} s (wall {wall:.0f} s) · model "
          f"{args.checkpoint or 'as the app picks (checkpoints/default.safetensors, else untrained)'} · queue "
          f"size {args.queue_size or 'as the app sets it'} · cache expiry every {every} s, age {age} s\n")
    print("| endpoint | calls | errors | refused: queue full | median ms | p95 ms | max ms | calls/s |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    errors = [r for r in results if r[2] and not r[2].startswith("rejected")]
    rejected = [r for r in results if r[2] and r[2].startswith("rejected")]
    for endpoint in ("explore", "segment"):
        ok = [s * 1000 for e, s, err in results if e == endpoint and not err]
        bad = sum(1 for e, _, err in errors if e == endpoint)
        full = sum(1 for e, _, _ in rejected if e == endpoint)
        cells = (f"{statistics.median(ok):.0f} | {percentile(ok, 0.95):.0f} | {max(ok):.0f} | {len(ok) / wall:.1f}"
                 if ok else "- | - | - | 0")
        print(f"| {endpoint} | {len(ok) + bad + full} | {bad} | {full} | {cells} |")
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
    bounded = cache_report(disk, t0, wall, every + age)
    for e in sorted({err for _, _, err in errors})[:10]:
        print(f"error: {e}")
    if rejected:
        print(f"refused (queue full): {rejected[0][2]}")
    leak = growth > args.max_growth_mb
    problems = ([f"{len(errors)} errors"] if errors else []) + ([f"RSS grew {growth:.0f} MB"] if leak else []) \
        + (["the cache kept growing"] if bounded is False else [])
    print("\nverdict: " + (", ".join(problems) if problems else "OK"))
    return 1 if problems else 0


def cache_report(disk: list[tuple[float, float, int, int]], t0: float, wall: float, horizon: float) -> bool | None:
    """Print the cache on disk over the run (about a dozen rows) and judge it: once files can be older than
    the expiry's horizon (every + age seconds), the cache should stop growing. None: the run was too short."""
    print(f"\nGradio cache on disk over the run (sizes include folders; files older than {horizon:.0f} s "
          "(sweep period + age) are gone by then):\n")
    print("| s | MB on disk | files | folders |\n|---:|---:|---:|---:|")
    run = [d for d in disk if d[0] >= t0 - 1]
    step = max(1, -(-len(run) // 12))  # about a dozen rows
    for t, mb, files, folders in run[::step] + ([run[-1]] if run and (len(run) - 1) % step else []):
        print(f"| {t - t0:.0f} | {mb:.1f} | {files} | {folders} |")
    late = [d for d in run if d[0] - t0 >= horizon]
    if wall < 2 * horizon or len(late) < 4:
        print(f"\ncache bounded: not judged (run at least {2 * horizon:.0f} s to see the plateau)")
        return None
    half = len(late) // 2
    first, second = max(d[1] for d in late[:half]), max(d[1] for d in late[half:])
    bounded = second <= 1.25 * first + 1.0
    print(f"\ncache bounded: {'yes' if bounded else 'NO'} -- largest {first:.1f} MB in the first half after "
          f"{horizon:.0f} s, {second:.1f} MB in the second half; peak over the run {max(d[1] for d in run):.1f} MB")
    return bounded


if __name__ == "__main__":
    sys.exit(main())
