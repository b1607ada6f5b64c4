"""ELGAN Studio: explore a trained Equivariant Layered GAN, segment photos with its U-Net, invert your own
photo into the GAN and edit it, train new ones.

    python app.py                                   # the first bundle in checkpoints/ (default.safetensors)
    python app.py --checkpoint runs/00003-pipeline-synthetic-64-E/bundle.safetensors --port 7861
    ELGAN_DATA_ROOT=/data python app.py             # folders under /data become training datasets

This file puts the page together: start-up (the first model loaded, the examples written), the tabs in
order, the queue, the command line. The tabs' layout and wiring are studio/tabs.py (head, Explore, Segment)
and studio/ui.py (Your photo, Train); every computation is a plain function in the studio package. Handlers
are stateless; the one shared object is the read-only model registry (loaded once, guarded by a lock for
loading), and gr.State holds only small values (the selected model's public key, a log signature). No value
sent to the browser names a server path: models by key ('default.safetensors', '<run>/<file>'), runs by name.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from studio import segment, tabs, ui
from studio.access import TrainAccess, train_access
from studio.registry import ModelRegistry, StudioError

CSS = (".pixelated img { image-rendering: pixelated; } .caption p { margin: 0; } "
       # Explore's live views come at the model's size (e.g. 128²) and the browser scales them up, at most to
       # 256 px high (2x of 128², 4x of 64²: whole pixels), as the server's upscaled copies used to show
       ".native img { object-fit: contain !important; max-height: 256px; } "
       ".notation { font-size: 0.85em; opacity: 0.75; } #intro p { margin: 0.2em 0; } "
       # a wide screen shows the Explore pictures right of the sliders; a narrow one stacks them on top
       "@media (min-width: 768px) { .pictures-right { flex-direction: row-reverse; } } "
       "@media (max-width: 767px) { #intro .notation, #model-info .notation { display: none; } } "
       ".domain-warning { border-left: 4px solid #d97706; background: rgba(217, 119, 6, 0.12); "
       "padding: 0.5em 0.75em; border-radius: 4px; }")
LAUNCH_OPTIONS: dict[str, Any] = {"css": CSS, "max_file_size": f"{segment.MAX_UPLOAD_BYTES // 1024**2}mb",
                                  # no browser run history: Gradio 6 would re-read and re-write a list of the
                                  # last 100 calls in localStorage on every slider move (JSON of all inputs and
                                  # outputs), the largest JavaScript cost of a move (docs/performance.md)
                                  "run_history": False,
                                  # system fonts: no request to a font CDN (offline machines, quicker first paint)
                                  "theme": gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                                          font_mono=["ui-monospace", "monospace"])}
EXAMPLES_DIR = Path(tempfile.gettempdir()) / "elgan-studio" / "examples"
# a public Space under load: at most QUEUE_SIZE requests wait at once (all events together; each event's own
# concurrency limit is set where studio/ wires it); one more is refused at once, and the page says "This
# application is currently busy. Please try again." Every CACHE_EXPIRY[0] s, Gradio deletes the files of its
# cache (output pictures, uploads) older than CACHE_EXPIRY[1] s: the disk holds about half an hour of traffic
QUEUE_SIZE = 32
CACHE_EXPIRY = (300, 1800)


ui.install_atomic_image_cache()  # Gradio's output-image cache, made safe for concurrent visitors
ui.install_cache_sweep()  # and its expiry (delete_cache below), safe under load, with no empty folders left


def load_start(registry: ModelRegistry, default_model: str | None) -> tuple[str, list[str]]:
    """The start model's key, loaded now so the first request never waits for it, and the example images
    of Segment and Your photo (the project's test scenes, and every shipped model's own samples)."""
    # the start model as its public key (a caller may name it by the path of a bundle the registry lists)
    start_model = registry.key_of(default_model) if default_model else registry.default()
    examples = segment.write_examples(registry.get(start_model), EXAMPLES_DIR)
    for key in registry.shipped():  # every shipped model's own samples (e.g. horses: no photo is committed)
        if key != start_model:
            try:
                examples += segment.write_model_samples(registry.get(key), EXAMPLES_DIR,
                                                        Path(key).stem + "-generated")
            except StudioError:  # a broken file: the selector reports it when chosen; no examples from it
                continue
    segment.warm_domain_check(registry)  # builds the feature net in a thread if a loaded model checks uploads
    return start_model, examples


def build_demo(registry: ModelRegistry, runs_root: str | Path = "runs", data_root: str | Path | None = None,
               default_model: str | None = None, concurrency: int = 2, allow_training: bool = True,
               access: TrainAccess | None = None, queue_size: int = QUEUE_SIZE,
               cache_expiry: tuple[int, int] = CACHE_EXPIRY) -> gr.Blocks:
    """The whole app; tests launch it in-process (``demo.launch(prevent_thread_lock=True, ...)``).

    Who may train is `access` (``studio.access.train_access()`` reads it from the environment when
    the app is started as a program); without it, anyone if `allow_training`, else nobody. At most
    `queue_size` requests wait at once (one more is refused: "busy"); every `cache_expiry[0]` s Gradio deletes
    the files of its cache older than `cache_expiry[1]` s.
    """
    access = access or (TrainAccess() if allow_training else TrainAccess(False))
    if queue_size < 1:  # Gradio's max_size=0 would refuse every request
        raise StudioError(f"the queue must hold at least one request, got --queue-size {queue_size}")
    runs = Path(runs_root).resolve()
    data = Path(data_root).resolve() if data_root else None
    start_model, examples = load_start(registry, default_model)
    gcfg = registry.get(start_model).generator.cfg  # sizes the code sliders until another model is chosen

    with gr.Blocks(title="ELGAN Studio", delete_cache=cache_expiry) as demo:
        line = tabs.model_line(registry, start_model)  # every tab reads the selected model from line.state
        c, c_sup = tabs.explore_tab(demo, registry, line.state, gcfg)
        tabs.segment_tab(registry, line.state, examples)
        ui.photo_tab(registry, line.state, examples, gcfg.n_categories, gcfg.n_super)  # "Your photo": inversion
        ui.train_tab(demo, registry, line.state, line.dropdown, line.info, runs, data, access)  # "Train"
        tabs.wire_model_choice(registry, line, c, c_sup)  # a new model refits Explore's code sliders
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="bundle to open first (default: checkpoints/default."
                   "safetensors, else the first checkpoints/*.safetensors, else an untrained demo model)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder of selectable bundles")
    p.add_argument("--runs-root", default="runs", help="where training runs go (and are listed from)")
    p.add_argument("--data-root", default=os.environ.get("ELGAN_DATA_ROOT"),
                   help="datasets offered for training: its sub-folders (default: $ELGAN_DATA_ROOT)")
    # Gradio's own variables win when set (Hugging Face Spaces sets GRADIO_SERVER_NAME=0.0.0.0)
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="public gradio.live link (off by default)")
    p.add_argument("--no-train", action="store_true", default=os.environ.get("ELGAN_STUDIO_TRAIN") == "0",
                   help="hide the Train tab and refuse training requests (or ELGAN_STUDIO_TRAIN=0). On a Hugging "
                   "Face Space training is off unless ELGAN_STUDIO_TRAIN=1, and then only for the users named in "
                   "ELGAN_STUDIO_TRAIN_USERS")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--queue-size", type=int, default=QUEUE_SIZE,
                   help="requests that may wait at once, all events together; one more is refused (\"busy\")")
    p.add_argument("--cache-expiry", type=int, nargs=2, default=CACHE_EXPIRY, metavar=("EVERY_S", "AGE_S"),
                   help="every EVERY_S seconds, delete cached outputs and uploads older than AGE_S seconds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for inference (1 is fastest for single images on a busy CPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, find the models, build the app and serve it."""
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    registry = ModelRegistry(args.checkpoints, args.runs_root, device,
                             extra=[args.checkpoint] if args.checkpoint else None)
    try:
        demo = build_demo(registry, args.runs_root, args.data_root, default_model=registry.default(),
                          access=train_access(os.environ, no_train=args.no_train), queue_size=args.queue_size,
                          cache_expiry=tuple(args.cache_expiry))
    except StudioError as exc:
        raise SystemExit(f"error: {exc}") from None
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
