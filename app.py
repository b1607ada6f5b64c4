"""ELGAN Studio: explore a trained Equivariant Layered GAN, segment photos with its U-Net, invert your own
photo into the GAN and edit it, train new ones.

    python app.py                                   # the first bundle in checkpoints/ (default.safetensors)
    python app.py --checkpoint runs/00003-pipeline-synthetic-64-E/bundle.safetensors --port 7861
    ELGAN_DATA_ROOT=/data python app.py             # folders under /data become training datasets

Layout and wiring only: every computation is a plain function in the studio package. Handlers are stateless;
the one shared object is the read-only model registry (loaded once, guarded by a lock for loading), and
gr.State holds only small values (the selected model's public key, a log signature). No value sent to the
browser names a server path: models by key ('default.safetensors', '<run>/<file>'), runs by name.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

from studio import render, segment, ui
from studio.access import TrainAccess, train_access
from studio.registry import UNTRAINED, ModelRegistry, StudioError, label_of

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
Z_LIMIT = 3.0
# a public Space under load: at most QUEUE_SIZE requests wait at once (all events together; each event's own
# concurrency limit is below); one more is refused at once, and the page says "This application is currently
# busy. Please try again." Every CACHE_EXPIRY[0] s, Gradio deletes the files of its cache (output pictures,
# uploads) older than CACHE_EXPIRY[1] s: the disk holds about half an hour of traffic, not all of it
QUEUE_SIZE = 32
CACHE_EXPIRY = (300, 1800)
VIEW_H, SMALL_H = 300, 150  # Explore's picture and mask, and its three layer views (px)
MOVES = render.MOVE_NAMES  # plain words for the eps directions
INTRO = """# ELGAN Studio
**What you are looking at:** a generator that taught itself, from unlabelled pictures, to draw every scene as
three layers -- a **background**, an **object** and a **mask** saying where the object is -- and a segmenter
trained only on those drawings, which cuts the object out of an image. **Explore** the generator with the
sliders, **Segment** an image of your own, find the generator's version of **your photo** and edit it, or
**Train** a new model.
<span class="notation">Notation (Yang et al., *Equivariant Layered GANs*): x = (1 − π)·x_b + π·x_f, with
G(z, c) → background x_b, foreground x_f, mask π; the segmenter is F_θ.</span>"""


ui.install_atomic_image_cache()  # Gradio's output-image cache, made safe for concurrent visitors
ui.install_cache_sweep()  # and its expiry (delete_cache below), safe under load, with no empty folders left


_image = ui.output_image  # lossless PNG, nearest-neighbour display, downloadable


def _model_choices(registry: ModelRegistry) -> list[tuple[str, str]]:
    """The selector's (label, value) pairs: values are the registry's public keys, never server paths."""
    return [(label_of(k), k) for k in registry.choices()]


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
    # the start model as its public key (a caller may name it by the path of a bundle the registry lists)
    start_model = registry.key_of(default_model) if default_model else registry.default()
    first = registry.get(start_model)  # load at start: the first request never waits for it
    gcfg = first.generator.cfg
    examples = segment.write_examples(first, EXAMPLES_DIR)
    for key in registry.shipped():  # every shipped model's own samples (e.g. horses: no photo is committed)
        if key != start_model:
            try:
                examples += segment.write_model_samples(registry.get(key), EXAMPLES_DIR,
                                                        Path(key).stem + "-generated")
            except StudioError:  # a broken file: the selector reports it when chosen; no examples from it
                continue
    segment.warm_domain_check(registry)  # builds the feature net in a thread if a loaded model checks uploads

    # ---- handlers: thin adapters from widgets to studio/; StudioError -> a message in the UI ----

    def explore(model: str, seed: float, z0: float, z1: float, z2: float, z3: float, z4: float, c: float,
                tx: float, ty: float, rotation: float, scale: float, compare: bool) -> tuple[Any, ...]:
        eps = {"tx": tx, "ty": ty, "rotation": rotation, "scale": scale}
        offsets = (z0, z1, z2, z3, z4)
        try:
            m = registry.get(model)
            c = min(int(c), m.generator.cfg.n_categories - 1)  # a model with fewer categories was selected
            layers = render.render_layers(registry, model, int(seed or 0), offsets, int(c), eps)
            views = render.layer_views(layers, target=None)  # native size: the browser scales them up
            panel, diff = render.compare_walk(registry, model, int(seed or 0), offsets, int(c), eps, target=None) \
                if compare else (None, None)
        except StudioError as exc:
            raise ui.refuse(exc, "explore") from None
        g = m.generator.cfg
        sup, sub = divmod(int(c), g.group_size)
        missing = [n for n, v in eps.items() if v and n not in m.perturb.eps_names]
        text = (f"shape group **{sup}**, appearance {sub + 1} of {g.group_size} in it · the object covers "
                f"{100 * float(layers.mask.mean()):.0f}% of the picture "
                f"<span class='notation'>(c = {int(c)}, c_sup = c // {g.group_size} = {sup})</span>")
        if missing or (m.phi is None and any(eps.values())):
            text += f" · ignored (not in this model): {', '.join(missing) or 'all moves (no Phi)'}"
        if diff is not None:
            text += (f"\n\nleft: the slider's walk · middle: the layers moved directly · right: the "
                     f"difference, mean {diff:.3f} (0 = the walk makes exactly the move) "
                     "<span class='notation'>(G(z + Φ(ε), c) | T_ε^X G(z, c) | |difference|)</span>")
        return (views["background"], views["foreground"], views["mask"], views["image"], views["cutout"],
                panel, text)

    def c_to_csup(model: str, c: float) -> int:
        return int(c) // registry.get(model).generator.cfg.group_size

    def csup_to_c(model: str, c_sup: float, c: float) -> int:
        g = registry.get(model).generator.cfg
        return min(int(c_sup), g.n_super - 1) * g.group_size + int(c) % g.group_size

    def variation_grid(model: str, seed: float, c: float, mode: str) -> np.ndarray:
        try:
            return render.variation_grid(registry, model, int(seed or 0), int(c), mode)
        except StudioError as exc:
            raise ui.refuse(exc, "grid") from None

    def strip(model: str, seed: float, z0: float, z1: float, z2: float, z3: float, z4: float, c: float,
              direction: str, with_true: bool) -> tuple[np.ndarray, str]:
        try:
            image, ts = render.direction_strip(registry, model, int(seed or 0), (z0, z1, z2, z3, z4), int(c),
                                               direction, with_true=with_true)
        except StudioError as exc:
            raise ui.refuse(exc, "strip") from None
        rows = "top: the generator's walk G(z + Φ(t·e), c)" + \
            ("; bottom: the layers moved directly (T^X)" if with_true else "")
        return image, (f"{MOVES.get(direction, direction)} ({direction}): t = {', '.join(f'{t:+.2f}' for t in ts)}. "
                       f"{rows}. Green bar: inside the range it learnt, [-1, 1]; grey: extrapolated (Fig. 7).")

    def select_model(choice: str, current: str, c: float) -> tuple[Any, ...]:
        """Load the chosen bundle; on failure keep the previous one selected and say why."""
        try:
            choice = registry.key_of(choice)  # a key (the selector's values); in-process, a listed path too
            m = registry.get(choice)
        except StudioError as exc:
            gr.Warning(str(exc))
            return current, current, gr.skip(), gr.skip(), gr.skip()
        g = m.generator.cfg
        return (choice, choice, registry.describe(choice),
                ui.code_slider(g.n_categories, int(c)),
                ui.code_slider(g.n_super, min(int(c), g.n_categories - 1) // g.group_size))

    def refresh_models(current: str) -> gr.Dropdown:
        return gr.Dropdown(choices=_model_choices(registry), value=current)

    def run_segment(model: str, upload: Any, threshold: float, bg_seed: float) -> tuple[Any, ...]:
        name = upload.get("orig_name") if isinstance(upload, dict) else None
        try:
            path = segment.upload_path(upload)
            if path is None:
                return None, None, None, None, "Drop, paste or pick an image above.", ""
            image = segment.read_upload(path, label=name)
            m = registry.get(model)
            seg = segment.segment(m, image, float(threshold))
            replaced = segment.replace_background(m, image, seg.alpha, int(bg_seed or 0))
            check = segment.domain_check(m, image, path)
        except StudioError as exc:
            raise ui.refuse(exc, "segment") from None
        w, h = image.size
        text = (f"{name or 'image'}: processed at {w}×{h} px (longer side ≤ {segment.WORK_SIDE}) · object "
                f"{100 * float((seg.probability > threshold).mean()):.0f}% of the image"
                + (" · **untrained model: the mask is meaningless**" if model == UNTRAINED else "")
                + (f" · {check.note}" if check is not None else ""))
        return seg.mask, seg.overlay, seg.cutout, replaced, text, segment.warning_text(check)

    # ---- layout --------------------------------------------------------------------------------------

    with gr.Blocks(title="ELGAN Studio", delete_cache=cache_expiry) as demo:
        gr.Markdown(INTRO, elem_id="intro")
        model_state = gr.State(start_model)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=240):
                model_dd = gr.Dropdown(_model_choices(registry), value=start_model, label="Model",
                                       info="bundles in checkpoints/ and finished runs")
                refresh = gr.Button("↻ Refresh list", size="sm")
            with gr.Column(scale=5, min_width=300):
                model_info = gr.Markdown(registry.describe(start_model), elem_id="model-info")

        with gr.Tab("Explore", id="explore"):
            # pictures first in the page (on a phone they stack above the sliders), shown on the right on a
            # wide screen (.pictures-right reverses the row), so every slider move is seen without scrolling
            with gr.Row(elem_classes="pictures-right"):
                with gr.Column(scale=6, min_width=300):
                    with gr.Row(equal_height=True):
                        out_image = _image("picture (composite x)", elem_id="composite", height=VIEW_H, native=True)
                        out_mask = _image("mask (π): white = object", elem_id="mask", height=VIEW_H, native=True)
                    caption = gr.Markdown(elem_classes="caption", elem_id="explore-caption")
                    with gr.Row(equal_height=True):
                        out_bg = _image("background (x_b)", height=SMALL_H, native=True, elem_id="background")
                        out_fg = _image("object layer (x_f)", height=SMALL_H, native=True, elem_id="foreground")
                        out_cut = _image("object cut out (RGBA)", height=SMALL_H, native=True, elem_id="cutout")
                with gr.Column(scale=5, min_width=300):
                    gr.Markdown("**Move the object** with the generator's own walk "
                                "<span class='notation'>Φ(ε); it learnt −1 … 1, beyond that it "
                                "extrapolates</span>", elem_classes="caption")
                    eps = [gr.Slider(-render.EPS_LIMIT, render.EPS_LIMIT, 0, step=0.05,
                                     label=f"{MOVES[name]} ({name})", elem_id=f"eps-{name}")
                           for name in render.DIRECTIONS]
                    c = ui.code_slider(gcfg.n_categories, label="appearance (c)", elem_id="c",
                                       info="the object's colours and texture · c: the paper's category code")
                    c_sup = ui.code_slider(gcfg.n_super, label="shape group (c_sup)", elem_id="c_sup",
                                           info="the object's outline · c_sup = c // group size")
                    with gr.Row(equal_height=True):
                        seed = gr.Number(0, label="scene (random seed of z)", precision=0, minimum=0,
                                         maximum=render.MAX_SEED, scale=3, elem_id="seed")
                        rand = gr.Button("random scene", scale=1, min_width=90)
                    compare = gr.Checkbox(False, label="compare the walk with moving the layers directly "
                                          "(Φ-walk vs T_ε^X)", elem_id="compare-box")
                    with gr.Accordion("fine variation of the scene (z[0..4] offsets)", open=False):
                        zs = [gr.Slider(-Z_LIMIT, Z_LIMIT, 0, step=0.05, label=f"z[{d}] offset")
                              for d in render.Z_DIMS]
            out_cmp = _image("walk G(z + Φ(ε), c) | layers moved directly T_ε^X G(z, c) | difference",
                             visible=False, height=280, elem_id="compare", native=True)
            with gr.Accordion("More pictures: grids of variations and strips along one move (paper Fig. 6, 7)",
                              open=True):
                with gr.Row():
                    grid_mode = gr.Radio(list(render.GRID_MODES), value=render.GRID_MODES[0],
                                         label="grid (c: appearance, c_sup: shape group, z: scene)", scale=3)
                    grid_btn = gr.Button("Render grid", scale=1)
                grid_out = _image("rows: background, object, mask, picture", elem_id="grid")
                with gr.Row():
                    direction = gr.Dropdown([(f"{MOVES[n]} ({n})", n) for n in render.DIRECTIONS], value="tx",
                                            label="move", scale=2)
                    with_true = gr.Checkbox(True, label="add a row with the layers moved directly", scale=2)
                    strip_btn = gr.Button("Render strip", scale=1)
                strip_out = _image("strip (download: PNG)", elem_id="strip")
                strip_caption = gr.Markdown()

        with gr.Tab("Segment", id="segment"):
            with gr.Row():
                upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], height=320,
                                  label=f"image (drop, paste or click; any size or mode, ≤ "
                                        f"{segment.MAX_UPLOAD_BYTES // 1024**2} MB)", elem_id="upload")
                with gr.Column():
                    seg_warning = gr.Markdown(elem_id="seg-warning")
                    threshold = gr.Slider(0.05, 0.95, 0.5, step=0.05, label="mask threshold",
                                          info="how sure the segmenter must be that a pixel is object "
                                               "(its probability F_θ)")
                    with gr.Row():
                        bg_seed = gr.Number(0, label="new background (random seed)", precision=0, minimum=0,
                                            maximum=render.MAX_SEED)
                        bg_rand = gr.Button("random", min_width=80, scale=0)
                    seg_btn = gr.Button("Segment", variant="primary")
                    seg_caption = gr.Markdown(elem_id="seg-caption")
            gr.Examples([[p] for p in examples], inputs=[upload], label="examples made by this project "
                        "(synthetic test scenes incl. 16-bit grey and RGBA, and each shipped model's samples)")
            with gr.Row():
                seg_mask = _image("mask (white = object)", elem_id="seg-mask")
                seg_overlay = _image("overlay")
                seg_cut = _image("object cut out (RGBA PNG)", elem_id="seg-cutout")
                seg_new = _image("object over a generated background (G_b(z))")

        ui.photo_tab(registry, model_state, examples, gcfg.n_categories, gcfg.n_super)  # "Your photo": inversion

        ui.train_tab(demo, registry, model_state, model_dd, model_info, runs, data, access)  # "Train"

        # ---- wiring: every event named; live views with always_last ----------------------------------
        eps_inputs = [c, *eps, compare]
        gr.on([demo.load, model_state.change, seed.change, *(z.change for z in zs), *(w.change for w in eps_inputs)],
              explore, [model_state, seed, *zs, *eps_inputs],
              [out_bg, out_fg, out_mask, out_image, out_cut, out_cmp, caption],
              api_name="explore", trigger_mode="always_last", show_progress="hidden", concurrency_id="render")
        compare.change(lambda on: gr.Image(visible=bool(on)), compare, out_cmp, api_name="show_compare",
                       queue=False, show_progress="hidden")
        c.input(c_to_csup, [model_state, c], c_sup, api_name="c_to_csup", show_progress="hidden", queue=False)
        c_sup.input(csup_to_c, [model_state, c_sup, c], c, api_name="csup_to_c", show_progress="hidden", queue=False)
        rand.click(lambda: random.randint(0, 99_999), None, seed, api_name="random_seed", queue=False)
        grid_btn.click(variation_grid, [model_state, seed, c, grid_mode], grid_out, api_name="grid",
                       concurrency_id="render")
        strip_btn.click(strip, [model_state, seed, *zs, c, direction, with_true], [strip_out, strip_caption],
                        api_name="strip", concurrency_id="render")
        model_dd.input(select_model, [model_dd, model_state, c], [model_state, model_dd, model_info, c, c_sup],
                       api_name="select_model")
        refresh.click(refresh_models, model_state, model_dd, api_name="refresh_models", queue=False)
        # a new upload clears the last image's caption in the browser (no request), so a refused upload does
        # not leave the previous image's caption under the error
        upload.change(None, None, [seg_caption, seg_warning], js="() => ['', '']", show_progress="hidden")
        # the upload reaches the handler as a file dict (preprocess=False): Gradio never decodes it
        gr.on([upload.change, seg_btn.click, threshold.release, bg_seed.change, model_state.change], run_segment,
              [model_state, upload, threshold, bg_seed],
              [seg_mask, seg_overlay, seg_cut, seg_new, seg_caption, seg_warning],
              api_name="segment", preprocess=False, trigger_mode="always_last", concurrency_limit=1)
        bg_rand.click(lambda: random.randint(0, 99_999), None, bg_seed, api_name="random_background", queue=False)
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


if __name__ == "__main__":
    args = parse_args()
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
