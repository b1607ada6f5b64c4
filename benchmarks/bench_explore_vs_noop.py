"""Latency as a person sees it: the Explore tab against a no-op Gradio app, side by side, in Chromium.

    python benchmarks/bench_explore_vs_noop.py                      # 30 moves per run, 2 runs per app
    python benchmarks/bench_explore_vs_noop.py --moves 50 --runs 3 --checkpoint runs/X/bundle.safetensors

Starts two servers, each its own process: the real app (`python app.py --no-train --threads 1`, as a Space
runs it) and a no-op app (this file with --serve-noop) whose one slider returns `--noop-images` smooth
`--noop-size`² pictures in the same output components as Explore's (lossless PNG, nearest-neighbour
display, same heights), computed in no time. Headless Chromium opens both pages; runs alternate (app,
no-op, app, no-op, ...), and in each run the first number input of the page (Explore's "move right (tx)"
box; the no-op's slider box) is set `--moves` times, as a person typing or stepping it, each time to a
value not used before in the invocation (nothing comes from a cache), the same values for every app.
With `--baseline-dir DIR` the app of another checkout (e.g. a previous commit) joins the alternation, so
that before and after are measured under the same load.

One move is timed inside the page, from the input event to the moment every picture of the view shows
the new frame (its src changed and `img.decode()` resolved): queue, handler, Gradio's postprocess, the
SSE message, the image requests and the browser's decode -- what a person waits for. The difference
between the apps is the model's share: what our handler, our outputs and our caption add to the floor
of any Gradio app that shows that many pictures. Prints median / p95 per app and run, pooled, and the
differences; where a move's time goes in the page (resource timing) and the page's main-thread time per
move (Chromium's Performance.getMetrics); with --profile, Gradio's own server-side phase times. Uses
Debian's /usr/bin/chromium through Playwright (never `playwright install`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import start_server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
APP_PICTURES = ".pictures-right img"  # Explore's five pictures (the compare view is outside and hidden)
NOOP_PICTURES = ".noop-pictures img"
CDP_METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")

# set the first number input as a person's keystroke does (an input event), then wait until every picture
# shows a new frame, decoded. Resolves to milliseconds since the input event: {shown: all pictures decoded
# (-1 after `timeout` ms), first: the first picture got its new URL (the server's answer reached the page),
# last: the last did, fetched: the last of those image requests ended (resource timing)}
MOVE_JS = """async ([pictures, n, value, timeout]) => {
  const input = document.querySelector('input[type=number]');
  const src = i => i.getAttribute('src');
  const before = new Set(Array.from(document.querySelectorAll(pictures), src));
  let done = false, t0 = 0, first = -1, last = -1;
  performance.clearResourceTimings();
  return await new Promise(resolve => {
    const finish = shown => {
      if (done) return;
      done = true; observer.disconnect(); document.removeEventListener('load', check, true);
      const urls = new Set(Array.from(document.querySelectorAll(pictures), i => i.src));
      const ends = performance.getEntriesByType('resource').filter(e => urls.has(e.name)).map(e => e.responseEnd);
      const join = performance.getEntriesByType('resource').find(e => e.name.includes('queue/join'));
      resolve({shown, first, last, fetched: ends.length ? Math.max(...ends) - t0 : -1,
               sent: join ? join.startTime - t0 : -1, joined: join ? join.responseEnd - t0 : -1});
    };
    const check = () => {
      if (done) return;
      const imgs = Array.from(document.querySelectorAll(pictures));
      const fresh = imgs.filter(i => src(i) && !before.has(src(i))).length;
      if (fresh && first < 0) first = performance.now() - t0;
      if (imgs.length < n || fresh < imgs.length) return;
      if (last < 0) last = performance.now() - t0;
      Promise.all(imgs.map(i => i.decode().catch(() => null))).then(() => {
        const now = Array.from(document.querySelectorAll(pictures));
        if (now.length >= n && now.every(i => !before.has(src(i)) && i.complete && i.naturalWidth))
          finish(performance.now() - t0);
      });
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
    document.addEventListener('load', check, true);
    setTimeout(() => finish(-1), timeout);
    t0 = performance.now();
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, String(value));
    input.dispatchEvent(new Event('input', {bubbles: true}));
  });
}"""


def serve_noop(port: int, n_images: int, size: int, fmt: str, run_history: bool) -> None:
    """A Gradio app as cheap as one can be with Explore's outputs: a slider -> n smooth size² pictures.

    Plain Gradio, independent of the app's code (so the baseline does not move when the app changes):
    the same kind of output components as Explore's (no upload, download button, nearest-neighbour
    display, the same heights), the same theme, concurrency 2 as the app's render events."""
    import gradio as gr
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size

    def pictures(v: float) -> list[np.ndarray]:
        t = (float(v) + 3) / 6  # a new smooth gradient per value: every frame is a new file, as in the app
        return [np.stack([(xx * 255 * (0.5 + t)) % 256, (yy * 255 + 40 * k) % 256,
                          np.full_like(xx, 255 * t)], -1).astype(np.uint8) for k in range(n_images)]

    with gr.Blocks(title="no-op") as demo:
        with gr.Row(elem_classes="noop-pictures"):
            outs = [gr.Image(label=f"picture {k}", format=fmt, interactive=False, elem_classes="pixelated",
                             buttons=["download", "fullscreen"], height=300 if k < 2 else 150)
                    for k in range(n_images)]
        slider = gr.Slider(-3, 3, 0, step=0.05, label="value")
        gr.on([demo.load, slider.change], pictures, slider, outs, trigger_mode="always_last",
              show_progress="hidden")
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name="127.0.0.1", server_port=port, css=".pixelated img { image-rendering: pixelated; }",
                run_history=run_history,
                theme=gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                     font_mono=["ui-monospace", "monospace"]))


def start(argv: list[str], port: int, env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start a server process; return once its /config answers."""
    return start_server(argv, port, env, log, cwd, name=argv[1])


def server_phases(port: int) -> list[dict]:
    """Gradio's own per-event phase times (GRADIO_PROFILING=1) of the live event: explore, or the no-op's."""
    import json

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/profiling/traces", timeout=30) as r:
        traces = json.loads(r.read())
    return [t for t in traces if t.get("fn_name") in ("explore", "pictures")]


def page_metrics(cdp: object) -> dict[str, float]:
    """Chromium's cumulative main-thread times of a page, in ms (DevTools protocol, Performance.getMetrics)."""
    got = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {k: got.get(k, 0.0) * 1000 for k in CDP_METRICS}


def stats(ms: list[float]) -> tuple[float, float]:
    s = sorted(ms)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moves", type=int, default=30, help="moves of the first number input per run")
    p.add_argument("--runs", type=int, default=2, help="runs per app, alternating app / no-op")
    p.add_argument("--warmup", type=int, default=5, help="moves per page before the first run, not counted")
    p.add_argument("--checkpoint", default=None, help="bundle the app serves (default: as the app picks)")
    p.add_argument("--baseline-dir", default=None, help="also serve the app from this folder (e.g. a previous commit, "
                   "`git archive HEAD | tar -x -C DIR`) in the same alternation: before and after under one load")
    p.add_argument("--noop-images", type=int, default=5, help="pictures the no-op returns (Explore shows five)")
    p.add_argument("--noop-size", type=int, default=128, help="their side in pixels (the model's native size)")
    p.add_argument("--noop-format", default="png", help="their format (Explore's outputs are PNG)")
    p.add_argument("--noop-run-history", choices=("on", "off"), default="on",
                   help="Gradio's browser run history in the no-op (on: Gradio's default; the app turns it off)")
    p.add_argument("--timeout-ms", type=float, default=30_000, help="a move not shown after this is a failure")
    p.add_argument("--profile", action="store_true", help="also print the servers' own phase times (Gradio's "
                   "GRADIO_PROFILING traces: queue wait, handler, postprocess = encoding + cache)")
    p.add_argument("--serve-noop", type=int, default=None, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_noop:
        serve_noop(args.serve_noop, args.noop_images, args.noop_size, args.noop_format, args.noop_run_history == "on")
        return 0
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} missing: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_load import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-side-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           **({"GRADIO_PROFILING": "1"} if args.profile else {})}
    checkpoint = ["--checkpoint", str(Path(args.checkpoint).resolve())] if args.checkpoint else []
    # name -> (argv, to which the port is appended; working folder; the pictures' selector; how many)
    apps = {"app": ([sys.executable, "app.py", "--no-train", "--threads", "1", *checkpoint, "--port"], ROOT,
                    APP_PICTURES, 5)}
    if args.baseline_dir:
        base = Path(args.baseline_dir).resolve()
        apps["baseline"] = ([sys.executable, "app.py", "--no-train", "--threads", "1",
                             *(checkpoint or ["--checkpoint", str(ROOT / "checkpoints" / "default.safetensors")]),
                             "--port"], base, APP_PICTURES, 5)
    apps["no-op"] = ([sys.executable, str(Path(__file__).resolve()), "--noop-images", str(args.noop_images),
                      "--noop-size", str(args.noop_size), "--noop-format", args.noop_format,
                      "--noop-run-history", args.noop_run_history, "--serve-noop"], ROOT, NOOP_PICTURES,
                     args.noop_images)
    ports = {name: free_port() for name in apps}
    servers: dict[str, subprocess.Popen] = {}
    times: dict[str, list[list[float]]] = {name: [] for name in apps}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in apps}  # where each move's time went
    main_thread = {name: dict.fromkeys(CDP_METRICS, 0.0) for name in apps}
    failures = dict.fromkeys(apps, 0)
    phases: dict[str, list[dict]] = {}
    try:
        for name, (argv, cwd, _, _) in apps.items():
            servers[name] = start([*argv, str(ports[name])], ports[name], {**env, "GRADIO_TEMP_DIR": str(work / name)},
                                  work / f"{name}.log", cwd)
        # every move a value not seen before in this invocation (121 steps of 0.05 in [-3, 3], visited in a
        # scrambled order), the same sequence for every app: no run is served from the app's render cache
        # or the browser's image cache
        def value(k: int) -> float:
            return round(-3 + 0.05 * (k * 37 % 121), 2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            pages, cdp = {}, {}
            for name, (_, _, selector, n) in apps.items():
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{ports[name]}/")
                page.wait_for_function(f"() => document.querySelectorAll({selector!r}).length >= {n}",
                                       timeout=120_000)
                for i in range(args.warmup):
                    page.evaluate(MOVE_JS, [selector, n, value(120 - i), args.timeout_ms])
                pages[name] = page
                cdp[name] = page.context.new_cdp_session(page)
                cdp[name].send("Performance.enable")
            for r in range(args.runs):
                for name, (_, _, selector, n) in apps.items():
                    run = []
                    before = page_metrics(cdp[name])
                    for i in range(args.moves):
                        move = pages[name].evaluate(MOVE_JS, [selector, n, value(r * args.moves + i),
                                                              args.timeout_ms])
                        if move["shown"] < 0:
                            failures[name] += 1
                        else:
                            run.append(move["shown"])
                            parts[name].append(move)
                    times[name].append(run)
                    after = page_metrics(cdp[name])
                    for k in CDP_METRICS:
                        main_thread[name][k] += after[k] - before[k]
            browser.close()
        if args.profile:
            phases = {name: server_phases(ports[name]) for name in apps}
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)
    report(args, times, parts, main_thread, failures, phases)
    return 1 if any(failures.values()) else 0


def report(args: argparse.Namespace, times: dict[str, list[list[float]]], parts: dict[str, list[dict[str, float]]],
           main_thread: dict[str, dict[str, float]], failures: dict[str, int], phases: dict[str, list[dict]]) -> None:
    load = os.getloadavg()
    print(f"\n{dt.datetime.now().isoformat(timespec='minutes')} · {platform.node()} · {os.cpu_count()} CPUs · "
          f"load {load[0]:.2f} / {load[1]:.2f} (1 / 5 min) · {args.moves} moves × {args.runs} runs per app, "
          f"alternating {' / '.join(times)} · no-op: {args.noop_images} {args.noop_format} pictures of "
          f"{args.noop_size}², run history {args.noop_run_history} · model: {args.checkpoint or 'as the app picks'}"
          + (f" · baseline: the app in {args.baseline_dir}" if args.baseline_dir else "") + "\n")
    print("| app | run | median ms | p95 ms | moves | failed |\n|---|---|---:|---:|---:|---:|")
    pooled = {name: [t for run in runs for t in run] for name, runs in times.items()}
    for name, runs in times.items():
        for k, run in enumerate(runs, 1):
            if run:
                print(f"| {name} | {k} | {stats(run)[0]:.0f} | {stats(run)[1]:.0f} | {len(run)} | |")
        if pooled[name]:
            med, p95 = stats(pooled[name])
            print(f"| **{name}** | all | **{med:.0f}** | **{p95:.0f}** | {len(pooled[name])} | {failures[name]} |")
    if pooled["no-op"]:
        nm, np_ = stats(pooled["no-op"])
        for name in times:
            if name != "no-op" and pooled[name]:
                am, ap = stats(pooled[name])
                print(f"\nthe model's share ({name} − no-op): median {am - nm:+.0f} ms, p95 {ap - np_:+.0f} ms")
    print("\nwhere a move's time goes in the browser (median ms after the input event): the page sends the request "
          "(queue/join) · its answer arrives · the first picture gets its new URL (the result is in the page) · "
          "the last does · their requests end · all decoded\n")
    print("| app | request sent | request queued | first new URL | last new URL | images fetched | shown |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for name, moves in parts.items():
        if moves:
            print(f"| {name} | " + " | ".join(f"{statistics.median([m[k] for m in moves]):.0f}"
                                             for k in ("sent", "joined", "first", "last", "fetched", "shown")) + " |")
    print("\nthe page's main thread per move (ms, Chromium's counters over the measured runs): all tasks · "
          "JavaScript · layout · style\n")
    print("| app | tasks | script | layout | style |\n|---|---:|---:|---:|---:|")
    for name, totals in main_thread.items():
        n = max(1, len(parts[name]) + failures[name])
        print(f"| {name} | " + " | ".join(f"{totals[k] / n:.1f}" for k in CDP_METRICS) + " |")
    if phases:
        print("\nserver side (Gradio's traces of the measured event, every call incl. warm-up): median / p95 ms\n")
        print("| app | calls | queue wait | handler | postprocess (encode + cache) | total |\n"
              "|---|---:|---:|---:|---:|---:|")
        for name, rows in phases.items():
            cells = " | ".join("{:.1f} / {:.1f}".format(*stats([r[k] for r in rows])) if rows else "-"
                               for k in ("queue_wait_ms", "fn_call_ms", "postprocess_ms", "total_ms"))
            print(f"| {name} | {len(rows)} | {cells} |")


if __name__ == "__main__":
    sys.exit(main())
