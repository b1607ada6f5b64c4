"""Gradio layout pieces of the app that would push app.py past one screenful per job.

The one module under elgan/ that imports gradio (app.py imports it; nothing in elgan/ does): it holds
layout and wiring only, as app.py does, and every computation is a plain function elsewhere in
elgan.studio -- here, the "Your photo" tab over elgan/studio/invert.py -- and the one patch of Gradio the
app needs (its output-image cache, written atomically).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..invert import InversionConfig
from . import invert as photo
from . import render, segment
from .registry import UNTRAINED, ModelRegistry, StudioError


def install_atomic_image_cache() -> None:
    """Make Gradio's cache of output images safe under concurrent visitors.

    Gradio 6 stores each returned image at a path named by the hash of its bytes, with a plain
    write_bytes: when two visitors get the same picture (every first view is seed 0), the second write
    truncates the file while the first visitor's browser is downloading it, and that download breaks
    (1 in 4 identical concurrent requests in tests/test_hostile_uploads.py). Same bytes, same path: the
    file is written once, under a temporary name renamed into place, and reused afterwards.
    """
    from gradio import processing_utils as pu

    def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if path.is_file() and path.stat().st_size == len(data):
            os.utime(path)  # handed out again: delete_cache ages files by their time
        else:
            tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(path)

    pu.save_pil_to_cache = save_pil_to_cache


def code_slider(n: int, value: int = 0, **kw: Any) -> gr.Slider:
    """A slider over the codes 0..n-1 (also as an update). Gradio refuses minimum == maximum, so a code
    with a single value (one super-category) shows a locked slider over [0, 1] held at 0."""
    return gr.Slider(minimum=0, maximum=max(1, n - 1), value=max(0, min(int(value), n - 1)), step=1,
                     interactive=n > 1, **kw)


def output_image(label: str, **kw: Any) -> gr.Image:
    """An output image: lossless PNG, nearest-neighbour display, downloadable."""
    return gr.Image(label=label, format="png", interactive=False, elem_classes="pixelated",
                    buttons=["download", "fullscreen"], **kw)


def photo_tab(registry: ModelRegistry, model_state: gr.State, examples: Sequence[str], n_categories: int,
              n_super: int) -> None:
    """The "Your photo" tab: upload -> inversion (with progress) -> layers; then Phi and c edit the codes.

    Called inside the app's gr.Blocks. The inverted codes live in a gr.State as a small dict (z as
    floats, c, the model's key): the edit handlers rebuild G(z + Phi(eps), c) from it on every move.
    """

    def run_invert(model: str, upload: Any, steps: float, seed: float,
                   progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 -- Gradio's idiom
        name = upload.get("orig_name") if isinstance(upload, dict) else None
        try:
            path = segment.upload_path(upload)
            if path is None:
                return (None,) * 5 + ("Drop, paste or pick a photo above.",) + (gr.skip(),) * 7
            image = segment.read_upload(path, label=name)
            m = registry.get(model)
            original, result = photo.invert_photo(m, image, int(steps), int(seed or 0),
                                                  photo.gradio_progress(progress))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        views = photo.result_views(original, result)
        g = m.generator.cfg
        text = photo.describe(result, g.group_size) + \
            ("\n\n**Untrained model: its reconstructions are noise.**" if model == UNTRAINED else "")
        return (views["original"], views["reconstruction"], views["background"], views["foreground"],
                views["mask"], text, photo.codes_state(model, result),
                code_slider(g.n_categories, result.c), code_slider(g.n_super, result.c_sup), 0.0, 0.0, 0.0, 0.0)

    def run_edit(model: str, codes: Any, tx: float, ty: float, rotation: float, scale: float,
                 c: float) -> tuple[Any, ...]:
        if not codes:
            return None, None, "Invert a photo first; the sliders then edit its codes."
        eps = {"tx": tx, "ty": ty, "rotation": rotation, "scale": scale}
        try:
            m = registry.get(model)
            z, _ = photo.state_codes(m, model, codes)
            walked = photo.edit(m, z, int(c), eps).image
            moved = photo.move_layers(m, z, int(c), eps)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return photo.view(walked), photo.view(moved), photo.edit_caption(m, codes, int(c), eps, walked, moved)

    def c_to_csup(model: str, c: float) -> int:
        return int(c) // registry.get(model).generator.cfg.group_size

    def csup_to_c(model: str, c_sup: float, c: float) -> int:
        g = registry.get(model).generator.cfg
        return int(c_sup) * g.group_size + int(c) % g.group_size

    with gr.Tab("Your photo", id="photo"):
        codes = gr.State(None)
        with gr.Row():
            upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], height=280,
                              label=f"photo (centre-cropped to a square; ≤ {segment.MAX_UPLOAD_BYTES // 1024**2} MB)",
                              elem_id="photo-upload")
            with gr.Column():
                steps = gr.Slider(photo.MIN_STEPS, photo.MAX_STEPS, InversionConfig().steps, step=10,
                                  label="search steps", info="more: a closer match, slower (linear in steps)")
                seed = gr.Number(0, label="seed of the starting codes", precision=0, minimum=0,
                                 maximum=render.MAX_SEED)
                invert_btn = gr.Button("Invert", variant="primary")
                caption = gr.Markdown(elem_id="photo-caption")
        gr.Examples([[p] for p in examples], inputs=[upload], label="examples made by this project "
                    "(model samples invert best; synthetic test scenes are held out)", elem_id="photo-examples")
        with gr.Row(equal_height=True):
            views = [output_image(label) for label in ("original", "reconstruction", "background", "foreground",
                                                       "mask")]
        with gr.Row():
            with gr.Column(min_width=240):
                gr.Markdown("Φ walk from the inverted z, z + Φ(ε) (training covered [-1, 1])")
                eps = [gr.Slider(-render.EPS_LIMIT, render.EPS_LIMIT, 0, step=0.05, label=f"ε {name}",
                                 elem_id=f"photo-eps-{name}") for name in render.DIRECTIONS]
            with gr.Column(min_width=240):
                c = code_slider(n_categories, label="c (category)", elem_id="photo-c",
                                info="starts at the inverted c: restyles the foreground")
                c_sup = code_slider(n_super, label="c_sup (super-category)",
                                    info="mask shape; moving it sets c = group·c_sup + c % group")
                edit_caption = gr.Markdown(elem_classes="caption", elem_id="photo-edit-caption")
            edited = output_image("edited G(z + Φ(ε), c)", elem_id="photo-edited")
            moved = output_image("layers moved by T_ε^X", elem_id="photo-moved")

        # the upload reaches the handler as a file dict (preprocess=False): Gradio never decodes it
        gr.on([upload.change, invert_btn.click], run_invert, [model_state, upload, steps, seed],
              [*views, caption, codes, c, c_sup, *eps], api_name="invert_photo", preprocess=False,
              trigger_mode="always_last", concurrency_limit=1, concurrency_id="invert",
              show_progress_on=[views[1]])  # one progress bar, on the reconstruction it is making
        gr.on([codes.change, c.change, *(s.change for s in eps)], run_edit, [model_state, codes, *eps, c],
              [edited, moved, edit_caption], api_name="edit_photo", trigger_mode="always_last",
              show_progress="hidden", concurrency_id="render")
        c.input(c_to_csup, [model_state, c], c_sup, api_name="photo_c_to_csup", show_progress="hidden",
                queue=False)
        c_sup.input(csup_to_c, [model_state, c_sup, c], c, api_name="photo_csup_to_c", show_progress="hidden",
                    queue=False)
