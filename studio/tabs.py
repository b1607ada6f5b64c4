"""Gradio layout of the page's head (intro and model line) and of the Explore and Segment tabs.

Layout and wiring only, as in ui.py (which holds the Your-photo and Train tabs and the shared widgets):
every computation is a plain function of render.py or segment.py. Each builder is called inside the app's
gr.Blocks and gets what the tabs share -- the read-only model registry and the selected model's gr.State --
as arguments; its handlers are closures over the registry alone, typed and stateless, and a StudioError
becomes the page's error message (:func:`studio.ui.refuse`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, NamedTuple

import gradio as gr
import numpy as np

from elgan.config import GeneratorConfig

from . import render, segment
from .registry import UNTRAINED, ModelRegistry, StudioError, label_of
from .ui import code_slider, link_codes, output_image, refuse

Z_LIMIT = 3.0
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


class ModelLine(NamedTuple):
    """The widgets every tab shares: the selected model (its public key) and the selector showing it."""

    state: gr.State  # the selected model's key: every tab's handlers read the model from it
    dropdown: gr.Dropdown
    info: gr.Markdown  # what the selected model is (registry.describe)
    refresh: gr.Button


def model_choices(registry: ModelRegistry) -> list[tuple[str, str]]:
    """The selector's (label, value) pairs: values are the registry's public keys, never server paths."""
    return [(label_of(k), k) for k in registry.choices()]


def model_line(registry: ModelRegistry, start_model: str) -> ModelLine:
    """The page's head: what the app is, then the model selector and what the selected model is."""
    gr.Markdown(INTRO, elem_id="intro")
    state = gr.State(start_model)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=240):
            dropdown = gr.Dropdown(model_choices(registry), value=start_model, label="Model",
                                   info="bundles in checkpoints/ and finished runs")
            refresh = gr.Button("↻ Refresh list", size="sm")
        with gr.Column(scale=5, min_width=300):
            info = gr.Markdown(registry.describe(start_model), elem_id="model-info")
    return ModelLine(state, dropdown, info, refresh)


def wire_model_choice(registry: ModelRegistry, line: ModelLine, c: gr.Slider, c_sup: gr.Slider) -> None:
    """Choosing a model loads it and fits Explore's code sliders (`c`, `c_sup`) to it; ↻ re-lists the models."""
    def select_model(choice: str, current: str, c: float) -> tuple[Any, ...]:
        """Load the chosen bundle; on failure keep the previous one selected and say why."""
        try:
            choice = registry.key_of(choice)  # a key (the selector's values); in-process, a listed path too
            m = registry.get(choice)
        except StudioError as exc:
            gr.Warning(str(exc))
            return current, current, gr.skip(), gr.skip(), gr.skip()
        g = m.generator
        return (choice, choice, registry.describe(choice), code_slider(g.cfg.n_categories, int(c)),
                code_slider(g.cfg.n_super, g.super_category(g.clamp_category(int(c)))))

    def refresh_models(current: str) -> gr.Dropdown:
        return gr.Dropdown(choices=model_choices(registry), value=current)

    line.dropdown.input(select_model, [line.dropdown, line.state, c],
                        [line.state, line.dropdown, line.info, c, c_sup], api_name="select_model")
    line.refresh.click(refresh_models, line.state, line.dropdown, api_name="refresh_models", queue=False)


def explore_tab(demo: gr.Blocks, registry: ModelRegistry, model_state: gr.State,
                cfg: GeneratorConfig) -> tuple[gr.Slider, gr.Slider]:
    """The "Explore" tab: the layers of G(z, c) live under the sliders, then grids and strips. `cfg` (the start
    model's) sizes the code sliders; returns them (c, c_sup) for the model selector to refit."""
    def explore(model: str, seed: float, z0: float, z1: float, z2: float, z3: float, z4: float, c: float,
                tx: float, ty: float, rotation: float, scale: float, compare: bool) -> tuple[Any, ...]:
        eps = dict(zip(render.DIRECTIONS, (tx, ty, rotation, scale), strict=True))  # the sliders' order
        offsets = (z0, z1, z2, z3, z4)
        try:
            m = registry.get(model)
            c = m.generator.clamp_category(int(c))  # a model with fewer categories was selected
            layers = render.render_layers(registry, model, int(seed or 0), offsets, c, eps)
            views = render.layer_views(layers, target=None)  # native size: the browser scales them up
            panel, diff = render.compare_walk(registry, model, int(seed or 0), offsets, c, eps, target=None) \
                if compare else (None, None)
        except StudioError as exc:
            raise refuse(exc, "explore") from None
        g = m.generator
        group, sup, sub = g.cfg.group_size, g.super_category(c), g.index_in_group(c)
        missing = [n for n, v in eps.items() if v and n not in m.perturb.eps_names]
        text = (f"shape group **{sup}**, appearance {sub + 1} of {group} in it · the object covers "
                f"{100 * float(layers.mask.mean()):.0f}% of the picture "
                f"<span class='notation'>(c = {c}, c_sup = c // {group} = {sup})</span>")
        if missing or (m.phi is None and any(eps.values())):
            text += f" · ignored (not in this model): {', '.join(missing) or 'all moves (no Phi)'}"
        if diff is not None:
            text += (f"\n\nleft: the slider's walk · middle: the layers moved directly · right: the "
                     f"difference, mean {diff:.3f} (0 = the walk makes exactly the move) "
                     "<span class='notation'>(G(z + Φ(ε), c) | T_ε^X G(z, c) | |difference|)</span>")
        return (views["background"], views["foreground"], views["mask"], views["image"], views["cutout"],
                panel, text)

    with gr.Tab("Explore", id="explore"):
        # pictures first in the page (on a phone they stack above the sliders), shown on the right on a
        # wide screen (.pictures-right reverses the row), so every slider move is seen without scrolling
        with gr.Row(elem_classes="pictures-right"):
            with gr.Column(scale=6, min_width=300):
                with gr.Row(equal_height=True):
                    out_image = output_image("picture (composite x)", elem_id="composite", height=VIEW_H,
                                             native=True)
                    out_mask = output_image("mask (π): white = object", elem_id="mask", height=VIEW_H, native=True)
                caption = gr.Markdown(elem_classes="caption", elem_id="explore-caption")
                with gr.Row(equal_height=True):
                    out_bg = output_image("background (x_b)", height=SMALL_H, native=True, elem_id="background")
                    out_fg = output_image("object layer (x_f)", height=SMALL_H, native=True, elem_id="foreground")
                    out_cut = output_image("object cut out (RGBA)", height=SMALL_H, native=True, elem_id="cutout")
            with gr.Column(scale=5, min_width=300):
                gr.Markdown("**Move the object** with the generator's own walk "
                            "<span class='notation'>Φ(ε); it learnt −1 … 1, beyond that it "
                            "extrapolates</span>", elem_classes="caption")
                eps = [gr.Slider(-render.EPS_LIMIT, render.EPS_LIMIT, 0, step=0.05,
                                 label=f"{MOVES[name]} ({name})", elem_id=f"eps-{name}")
                       for name in render.DIRECTIONS]
                c = code_slider(cfg.n_categories, label="appearance (c)", elem_id="c",
                                info="the object's colours and texture · c: the paper's category code")
                c_sup = code_slider(cfg.n_super, label="shape group (c_sup)", elem_id="c_sup",
                                    info="the object's outline · c_sup = c // group size")
                with gr.Row(equal_height=True):
                    seed = gr.Number(0, label="scene (random seed of z)", precision=0, minimum=0,
                                     maximum=render.MAX_SEED, scale=3, elem_id="seed")
                    rand = gr.Button("random scene", scale=1, min_width=90)
                compare = gr.Checkbox(False, label="compare the walk with moving the layers directly "
                                      "(Φ-walk vs T_ε^X)", elem_id="compare-box")
                with gr.Accordion("fine variation of the scene (z[0..4] offsets)", open=False):
                    zs = [gr.Slider(-Z_LIMIT, Z_LIMIT, 0, step=0.05, label=f"z[{d}] offset") for d in render.Z_DIMS]
        out_cmp = output_image("walk G(z + Φ(ε), c) | layers moved directly T_ε^X G(z, c) | difference",
                               visible=False, height=280, elem_id="compare", native=True)
        more_pictures(registry, model_state, seed, zs, c)

    # live views: every move re-renders, and only the last of a burst of moves waits (always_last)
    eps_inputs = [c, *eps, compare]
    gr.on([demo.load, model_state.change, seed.change, *(z.change for z in zs), *(w.change for w in eps_inputs)],
          explore, [model_state, seed, *zs, *eps_inputs],
          [out_bg, out_fg, out_mask, out_image, out_cut, out_cmp, caption],
          api_name="explore", trigger_mode="always_last", show_progress="hidden", concurrency_id="render")
    compare.change(lambda on: gr.Image(visible=bool(on)), compare, out_cmp, api_name="show_compare",
                   queue=False, show_progress="hidden")
    link_codes(registry, model_state, c, c_sup, "")
    rand.click(lambda: random.randint(0, 99_999), None, seed, api_name="random_seed", queue=False)
    return c, c_sup


def more_pictures(registry: ModelRegistry, model_state: gr.State, seed: gr.Number, zs: Sequence[gr.Slider],
                  c: gr.Slider) -> None:
    """Explore's accordion: grids of variations (paper Fig. 6) and strips along one move (Fig. 7) of the scene
    that the sliders `seed`, `zs` and `c` show."""
    def variation_grid(model: str, seed: float, c: float, mode: str) -> np.ndarray:
        try:
            return render.variation_grid(registry, model, int(seed or 0), int(c), mode)
        except StudioError as exc:
            raise refuse(exc, "grid") from None

    def strip(model: str, seed: float, z0: float, z1: float, z2: float, z3: float, z4: float, c: float,
              direction: str, with_true: bool) -> tuple[np.ndarray, str]:
        try:
            image, ts = render.direction_strip(registry, model, int(seed or 0), (z0, z1, z2, z3, z4), int(c),
                                               direction, with_true=with_true)
        except StudioError as exc:
            raise refuse(exc, "strip") from None
        rows = "top: the generator's walk G(z + Φ(t·e), c)" + \
            ("; bottom: the layers moved directly (T^X)" if with_true else "")
        return image, (f"{MOVES.get(direction, direction)} ({direction}): t = {', '.join(f'{t:+.2f}' for t in ts)}. "
                       f"{rows}. Green bar: inside the range it learnt, [-1, 1]; grey: extrapolated (Fig. 7).")

    with gr.Accordion("More pictures: grids of variations and strips along one move (paper Fig. 6, 7)", open=True):
        with gr.Row():
            grid_mode = gr.Radio(list(render.GRID_MODES), value=render.GRID_MODES[0],
                                 label="grid (c: appearance, c_sup: shape group, z: scene)", scale=3)
            grid_btn = gr.Button("Render grid", scale=1)
        grid_out = output_image("rows: background, object, mask, picture", elem_id="grid")
        with gr.Row():
            direction = gr.Dropdown([(f"{MOVES[n]} ({n})", n) for n in render.DIRECTIONS], value="tx",
                                    label="move", scale=2)
            with_true = gr.Checkbox(True, label="add a row with the layers moved directly", scale=2)
            strip_btn = gr.Button("Render strip", scale=1)
        strip_out = output_image("strip (download: PNG)", elem_id="strip")
        strip_caption = gr.Markdown()

    grid_btn.click(variation_grid, [model_state, seed, c, grid_mode], grid_out, api_name="grid",
                   concurrency_id="render")
    strip_btn.click(strip, [model_state, seed, *zs, c, direction, with_true], [strip_out, strip_caption],
                    api_name="strip", concurrency_id="render")


def segment_tab(registry: ModelRegistry, model_state: gr.State, examples: Sequence[str]) -> None:
    """The "Segment" tab: an upload -> the U-Net's mask, overlay, cut-out and a new generated background, with
    a warning when the image is unlike the model's training images."""
    def run_segment(model: str, upload: Any, threshold: float, bg_seed: float,
                    clean: bool = True) -> tuple[Any, ...]:
        name = upload.get("orig_name") if isinstance(upload, dict) else None
        try:
            path = segment.upload_path(upload)
            if path is None:
                return None, None, None, None, "Drop, paste or pick an image above.", ""
            image = segment.read_upload(path, label=name)
            m = registry.get(model)
            seg = segment.segment(m, image, float(threshold), bool(clean))
            replaced = segment.replace_background(m, image, seg.alpha, int(bg_seed or 0))
            check = segment.domain_check(m, image, path)
        except StudioError as exc:
            raise refuse(exc, "segment") from None
        w, h = image.size
        text = (f"{name or 'image'}: processed at {w}×{h} px (longer side ≤ {segment.WORK_SIDE}) · object "
                f"{100 * float((seg.probability > threshold).mean()):.0f}% of the image"
                + segment.cleaning_note(m, bool(clean))
                + (" · **untrained model: the mask is meaningless**" if model == UNTRAINED else "")
                + (f" · {check.note}" if check is not None else ""))
        return seg.mask, seg.overlay, seg.cutout, replaced, text, segment.warning_text(check)

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
                clean = gr.Checkbox(True, label="clean the mask as the model does",
                                    info="models made for photos of one object keep the mask's largest "
                                         "region and fill its holes; off: the raw thresholded mask")
                seg_btn = gr.Button("Segment", variant="primary")
                seg_caption = gr.Markdown(elem_id="seg-caption")
        gr.Examples([[p] for p in examples], inputs=[upload], label="examples made by this project "
                    "(synthetic test scenes incl. 16-bit grey and RGBA, and each shipped model's samples)")
        with gr.Row():
            seg_mask = output_image("mask (white = object)", elem_id="seg-mask")
            seg_overlay = output_image("overlay")
            seg_cut = output_image("object cut out (RGBA PNG)", elem_id="seg-cutout")
            seg_new = output_image("object over a generated background (G_b(z))")

    # a new upload clears the last image's caption in the browser (no request), so a refused upload does
    # not leave the previous image's caption under the error
    upload.change(None, None, [seg_caption, seg_warning], js="() => ['', '']", show_progress="hidden")
    # the upload reaches the handler as a file dict (preprocess=False): Gradio never decodes it
    gr.on([upload.change, seg_btn.click, threshold.release, bg_seed.change, clean.change, model_state.change],
          run_segment, [model_state, upload, threshold, bg_seed, clean],
          [seg_mask, seg_overlay, seg_cut, seg_new, seg_caption, seg_warning],
          api_name="segment", preprocess=False, trigger_mode="always_last", concurrency_limit=1)
    bg_rand.click(lambda: random.randint(0, 99_999), None, bg_seed, api_name="random_background", queue=False)
