"""What every benchmark here shares: the machine's matmul floor, latency statistics, peak memory, the
header line naming date, CPU, threads and torch version. Not part of the library (benchmarks only)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch


def matmul_gflops(seconds: float = 1.0, n: int = 1024) -> float:
    """Sustained fp32 GEMM throughput (n^3) of this machine now: the denominator of every FLOP floor."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n**3 * k / (time.perf_counter() - t0) / 1e9


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(title: str) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    return (f"# {title} — {date.today()} — {cpu_name()}, {dev}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, load average {load:.2f} at start")


def start(title: str, threads: int) -> float:
    """Set the thread count and seed, print the header, measure and print the GEMM throughput the FLOP
    floors of this run are computed from (measured in the same process, under the same load)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(header(title))
    gflops = matmul_gflops()
    print(f"fp32 matmul throughput (1024³ GEMM, this run): {gflops:.1f} GFLOP/s\n")
    return gflops


def time_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    """Wall milliseconds of `runs` calls after `warmup` calls (CUDA synchronised when present)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def median_p95(ms: list[float]) -> tuple[float, float]:
    s = sorted(ms)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory_mb(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """(peak RSS of the process while `fn` runs, its rise over the RSS just before), in MiB: a thread
    samples /proc/self/statm every millisecond. CUDA: peak allocated device memory instead (both numbers)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
        return peak, peak - before
    before = _rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    for _ in range(repeats):
        fn()
    done.set()
    t.join()
    peak[0] = max(peak[0], _rss_mb())
    return peak[0], peak[0] - before


def flops_of(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def start_server(argv: list[str], port: int, env: dict[str, str], log: Path, cwd: Path,
                 name: str = "the server") -> subprocess.Popen:
    """Start a server process; return once its /config answers. Its stderr goes to `log` (a file, not a
    pipe nobody reads: a chatty server would block on a full pipe)."""
    with open(log, "w") as err:
        server = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{name} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"{name} did not answer within 300 s")
