"""Gradio layout pieces of the app that would push app.py past one screenful per job.

With tabs.py (the page's head, Explore, Segment), one of the two studio modules that import gradio (app.py
imports them; nothing in elgan/ imports gradio, nor studio): layout and wiring only, and every computation
is a plain function elsewhere -- here, the "Your photo" tab over studio/invert.py, the "Train" tab over
jobs.py and access.py (who may train), the widgets the tabs share (code sliders and their c <-> c_sup link,
output images), the patches of Gradio's cache the app needs (output pictures written atomically and
quickly, expired files deleted safely; the file work is studio/cache.py), and how a refused request is
reported (:func:`refuse`: one log line, no traceback).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from elgan.config import ABLATIONS, SIZES
from elgan.invert import InversionConfig

from . import cache, curves, jobs, progress, render, segment
from . import invert as photo
from .access import TrainAccess
from .registry import UNTRAINED, ModelRegistry, StudioError, label_of

log = logging.getLogger("studio")
POLL_S = 2.0  # the Train tab's refresh period
# the Train tab's words for each U-Net encoder (jobs.ENCODERS; a new encoder without words fails at start-up)
ENCODER_LABELS = {"scratch": "from scratch (the paper's)", "lite0": "pretrained ImageNet features (better on photos)"}


def refuse(exc: Exception | str, where: str = "") -> gr.Error:
    """A request the app refuses (a bad upload, a bad setting) as the page's error message. It is the
    visitor's mistake, not the server's: one line in the server log, no traceback."""
    message = str(exc)
    log.warning("refused%s: %s", f" {where}" if where else "", " ".join(message.split()))  # one line, always
    return gr.Error(message, print_exception=False)


def user_of(request: gr.Request | None, profile: gr.OAuthProfile | None = None) -> str | None:
    """The visitor's user name: Hugging Face sign-in (OAuth) first, else gradio's own login, else None."""
    if profile is not None and getattr(profile, "username", None):
        return str(profile.username)
    name = getattr(request, "username", None) if request is not None else None
    return str(name) if name else None


PNG_LEVEL = 1  # zlib level of output PNGs: on these pictures ~3x faster to encode than PIL's default 6, ~15% larger


def encode_image(img: Image.Image, format: str) -> bytes:
    """Gradio's encoding of an output image, but PNG at zlib level PNG_LEVEL (still lossless)."""
    from gradio import processing_utils as pu

    if format.lower() != "png":
        return pu.encode_pil_to_bytes(img, format)
    with io.BytesIO() as out:
        img.save(out, "png", pnginfo=pu.get_pil_metadata(img), compress_level=PNG_LEVEL)
        return out.getvalue()


def install_atomic_image_cache() -> None:
    """Make Gradio's cache of output images safe under concurrent visitors, and its PNGs quick to write.

    Gradio 6 stores each returned image at a path named by the hash of its bytes, with a plain
    write_bytes: when two visitors get the same picture (every first view is seed 0), the second write
    truncates the file while the first visitor's browser is downloading it, and that download breaks
    (1 in 4 identical concurrent requests in tests/test_hostile_app.py). Same bytes, same path: the
    file is written once, under a temporary name renamed into place, and reused afterwards
    (:func:`studio.cache.write_once`). PNGs are encoded at zlib level PNG_LEVEL
    (:func:`encode_image`): encoding was most of an Explore move's server time (docs/performance.md).
    """
    from gradio import processing_utils as pu

    def save_pil_to_cache(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = encode_image(img, format)
        return cache.write_once(cache_dir, pu.hash_bytes(data), f"{name}.{format}", data)

    pu.save_pil_to_cache = save_pil_to_cache


def install_cache_sweep() -> None:
    """Gradio's cache expiry (``gr.Blocks(delete_cache=...)``) with :func:`studio.cache.sweep` doing
    the deleting: safe while requests add files, and it removes the emptied folders, which Gradio 6 leaves
    behind (one per output picture). Gradio still schedules it and runs it once more at shutdown."""
    from gradio import route_utils

    def delete_files_created_by_app(blocks: gr.Blocks, age: int | None) -> None:
        keep: set[str] = set()
        for block in list(blocks.blocks.values()):  # example files: Gradio keeps them
            keep.update(getattr(block, "keep_in_cache", ()))
        cache.sweep(blocks.temp_file_sets, keep, age)

    route_utils.delete_files_created_by_app = delete_files_created_by_app


def code_slider(n: int, value: int = 0, **kw: Any) -> gr.Slider:
    """A slider over the codes 0..n-1 (also as an update). Gradio refuses minimum == maximum, so a code
    with a single value (one super-category) shows a locked slider over [0, 1] held at 0."""
    return gr.Slider(minimum=0, maximum=max(1, n - 1), value=max(0, min(int(value), n - 1)), step=1,
                     interactive=n > 1, **kw)


def link_codes(registry: ModelRegistry, model_state: gr.State, c: gr.Slider, c_sup: gr.Slider, prefix: str) -> None:
    """Keep a pair of c and c_sup sliders consistent (events `{prefix}c_to_csup`, `{prefix}csup_to_c`): moving c
    shows its shape group; moving c_sup picks the c with the same place in the new group (the generator's
    arithmetic: LayeredGenerator.super_category / with_super_category)."""
    def c_to_csup(model: str, c: float) -> int:
        return registry.get(model).generator.super_category(int(c))

    def csup_to_c(model: str, c_sup: float, c: float) -> int:
        return registry.get(model).generator.with_super_category(int(c), int(c_sup))

    c.input(c_to_csup, [model_state, c], c_sup, api_name=f"{prefix}c_to_csup", show_progress="hidden", queue=False)
    c_sup.input(csup_to_c, [model_state, c_sup, c], c, api_name=f"{prefix}csup_to_c", show_progress="hidden",
                queue=False)


def output_image(label: str, native: bool = False, **kw: Any) -> gr.Image:
    """An output image: lossless PNG, nearest-neighbour display, downloadable. `native`: the picture is sent
    at the model's size (e.g. 128²) and the browser scales it to fill the view (CSS class "native")."""
    return gr.Image(label=label, format="png", interactive=False,
                    elem_classes=["pixelated", "native"] if native else "pixelated",
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
                                                  photo.gradio_progress(progress, int(steps)))
            warning = segment.warning_text(segment.domain_check(m, image, path))
        except StudioError as exc:
            raise refuse(exc, "invert_photo") from None
        views = photo.result_views(original, result)
        g = m.generator.cfg
        text = (f"{warning}\n\n" if warning else "") + photo.describe(result, g.group_size) + \
            ("\n\n**Untrained model: its reconstructions are noise.**" if model == UNTRAINED else "")
        return (views["original"], views["reconstruction"], views["background"], views["foreground"],
                views["mask"], text, photo.codes_state(model, result),
                code_slider(g.n_categories, result.c), code_slider(g.n_super, result.c_sup), 0.0, 0.0, 0.0, 0.0)

    def run_edit(model: str, codes: Any, tx: float, ty: float, rotation: float, scale: float,
                 c: float) -> tuple[Any, ...]:
        if not codes:
            return None, None, "Invert a photo first; the sliders then edit its codes."
        eps = dict(zip(render.DIRECTIONS, (tx, ty, rotation, scale), strict=True))  # the sliders' order
        try:
            m = registry.get(model)
            z, _ = photo.state_codes(m, model, codes)
            walked = photo.edit(m, z, int(c), eps).image
            moved = photo.move_layers(m, z, int(c), eps)
        except StudioError as exc:
            raise refuse(exc, "edit_photo") from None
        return photo.view(walked), photo.view(moved), photo.edit_caption(m, codes, int(c), eps, walked, moved)

    with gr.Tab("Your photo", id="photo"):
        codes = gr.State(None)
        with gr.Row():
            upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], height=280,
                              label=f"photo (centre-cropped to a square; ≤ {segment.MAX_UPLOAD_BYTES // 1024**2} MB)",
                              elem_id="photo-upload")
            with gr.Column():
                steps = gr.Slider(photo.MIN_STEPS, photo.MAX_STEPS, InversionConfig().steps, step=10,
                                  label="search steps", info=f"joint search on z and c, then "
                                  f"{InversionConfig().refine_steps} refinement steps on z; more: a closer match, "
                                  "slower (linear in steps)")
                seed = gr.Number(0, label="seed of the starting codes", precision=0, minimum=0,
                                 maximum=render.MAX_SEED)
                invert_btn = gr.Button("Invert", variant="primary")
                caption = gr.Markdown(elem_id="photo-caption")
        gr.Examples([[p] for p in examples], inputs=[upload], label="examples made by this project "
                    "(model samples invert best; synthetic test scenes are held out)", elem_id="photo-examples")
        with gr.Row(equal_height=True):
            views = [output_image(label) for label in ("original", "reconstruction", "background", "object layer",
                                                       "mask")]
        with gr.Row():
            with gr.Column(min_width=240):
                gr.Markdown("**Move the object** with the generator's own walk from your photo's codes "
                            "<span class='notation'>(z + Φ(ε); it learnt −1 … 1)</span>")
                eps = [gr.Slider(-render.EPS_LIMIT, render.EPS_LIMIT, 0, step=0.05,
                                 label=f"{render.MOVE_NAMES[name]} ({name})", elem_id=f"photo-eps-{name}")
                       for name in render.DIRECTIONS]
            with gr.Column(min_width=240):
                c = code_slider(n_categories, label="appearance (c)", elem_id="photo-c",
                                info="starts at your photo's: restyles the object")
                c_sup = code_slider(n_super, label="shape group (c_sup)",
                                    info="the object's outline · c = group·c_sup + c % group")
                edit_caption = gr.Markdown(elem_classes="caption", elem_id="photo-edit-caption")
            edited = output_image("edited by the sliders (G(z + Φ(ε), c))", elem_id="photo-edited")
            moved = output_image("layers moved directly (T_ε^X)", elem_id="photo-moved")

        # a new upload clears the last photo's caption in the browser (no request): a refused upload must
        # not leave the previous photo's caption under the error
        upload.change(None, None, caption, js="() => ''", show_progress="hidden")
        # the upload reaches the handler as a file dict (preprocess=False): Gradio never decodes it
        gr.on([upload.change, invert_btn.click], run_invert, [model_state, upload, steps, seed],
              [*views, caption, codes, c, c_sup, *eps], api_name="invert_photo", preprocess=False,
              trigger_mode="always_last", concurrency_limit=1, concurrency_id="invert",
              show_progress_on=[views[1]])  # one progress bar, on the reconstruction it is making
        gr.on([codes.change, c.change, *(s.change for s in eps)], run_edit, [model_state, codes, *eps, c],
              [edited, moved, edit_caption], api_name="edit_photo", trigger_mode="always_last",
              show_progress="hidden", concurrency_id="render")
        link_codes(registry, model_state, c, c_sup, "photo_")


def train_tab(demo: gr.Blocks, registry: ModelRegistry, model_state: gr.State, model_dd: gr.Dropdown,
              model_info: gr.Markdown, runs: Path, data: Path | None, access: TrainAccess) -> None:
    """The "Train" tab: start / stop / resume one background job, its live curves, load its result.

    Called inside the app's gr.Blocks. Who may train is `access` (studio/access.py): with training
    off the tab is hidden and every endpoint refuses; with an allow-list only the users on it may start,
    stop, resume or load a run, and everyone else sees why, not the runs. The page never shows a
    process id or a server path: runs by name, datasets by folder name, output with paths shortened.
    """
    def models() -> list[str]:
        """The files of the selectable bundles: what a U-Net run may stream from (server side only)."""
        return registry.files()

    def bundle_file(model: str) -> str:
        """The selected model's file for a U-Net run; "" for the untrained model or a key not offered."""
        try:
            return str(registry.path_of(model))
        except StudioError:
            return ""

    initial_runs = jobs.list_runs(runs) if access.offered and not access.restricted else []

    def status(st: jobs.JobStatus) -> str:
        """The run's name, state and -- from its files, from the first second -- its stage in plain words."""
        try:
            program = jobs.settings_of(st.run_dir).program if st.run_dir else "gan"
        except jobs.JobError:
            program = "gan"
        return progress.job_line(st, program)

    def check(request: gr.Request | None, profile: gr.OAuthProfile | None, what: str) -> None:
        refused = access.refusal(user_of(request, profile))
        if refused is not None:
            raise refuse(refused, what)

    def train_start(model: str, program: str, dataset: str, size: int, iters: float, ablation: str,
                    unet_steps: float, threads: float, d_width: float | None, unet_encoder: str | None,
                    request: gr.Request, profile: gr.OAuthProfile | None) -> tuple[str, gr.Dropdown]:
        check(request, profile, "train_start")  # d_width, unet_encoder last: older clients get their defaults
        settings = jobs.TrainSettings(program=program, dataset=dataset, size=int(size), iters=int(iters or 0),
                                      ablation=ablation, unet_steps=int(unet_steps or 0), threads=int(threads),
                                      gan_bundle=bundle_file(model), d_width=int(d_width or 0),
                                      unet_encoder=unet_encoder or jobs.TrainSettings.unet_encoder)
        try:
            st = jobs.start_job(settings, runs, data, models())
        except StudioError as exc:
            raise refuse(exc, "train_start") from None
        return status(st), gr.Dropdown(choices=jobs.list_runs(runs), value=st.run_dir.name)

    def train_stop(request: gr.Request, profile: gr.OAuthProfile | None) -> str:
        check(request, profile, "train_stop")
        st = jobs.stop_job(runs)
        return status(jobs.job_status(runs, st.run_dir.name if st.run_dir else None)) \
            if st.stopped else f"**Idle** — {st.message}"

    def train_resume(run: str | None, request: gr.Request,
                     profile: gr.OAuthProfile | None) -> tuple[str, gr.Dropdown]:
        check(request, profile, "train_resume")
        try:
            st = jobs.resume_job(run or "", runs, data, models())
        except StudioError as exc:
            raise refuse(exc, "train_resume") from None
        return status(st), gr.Dropdown(choices=jobs.list_runs(runs), value=st.run_dir.name)

    def train_view(request: gr.Request, profile: gr.OAuthProfile | None) -> tuple[str, gr.Dropdown]:
        """On page load: the runs and the status for a visitor who may train, else why they may not."""
        refused = access.refusal(user_of(request, profile))
        if refused is not None:
            return f"**Training is not available to you** — {refused}", gr.Dropdown(choices=[], value=None)
        names = jobs.list_runs(runs)
        return status(jobs.job_status(runs)), gr.Dropdown(choices=names, value=next(iter(names), None))

    def train_poll(run: str | None, seen: str, request: gr.Request,
                   profile: gr.OAuthProfile | None) -> tuple[Any, ...]:
        """Status every POLL_S; the plot and sample are re-sent only when the run's files changed."""
        refused = access.refusal(user_of(request, profile))
        if refused is not None:
            return f"**Training is not available to you** — {refused}", "", gr.skip(), gr.skip(), seen
        st = jobs.job_status(runs, run)
        if st.run_dir is None:
            return status(st), "", gr.skip(), gr.skip(), seen
        sig = curves.signature(st.run_dir)
        tail = jobs.output_tail(st.run_dir)
        if sig == seen:
            return status(st), tail, gr.skip(), gr.skip(), seen
        logs = curves.read_logs(st.run_dir)
        sample = curves.latest_sample(st.run_dir)
        image = np.asarray(Image.open(sample).convert("RGB")) if sample else None
        return status(st), tail, curves.figure(logs, st.run_dir.name), image, sig

    def train_load(run: str | None, request: gr.Request,
                   profile: gr.OAuthProfile | None) -> tuple[str, gr.Dropdown, str]:
        """Put a finished run's model into the selector (and so into Explore and Segment)."""
        check(request, profile, "train_load")
        try:
            st = jobs.job_status(runs, run)
            if st.running and st.run_dir is not None and st.run_dir.name == run:
                raise jobs.JobError(f"{run} is still running; load it when it has finished")
            key = registry.key_of(str(progress.result_model(jobs.run_folder(runs, run or "")).resolve()))
            registry.get(key)
        except StudioError as exc:
            raise refuse(exc, "train_load") from None
        gr.Info(f"loaded {label_of(key)}")
        return key, gr.Dropdown(choices=[(label_of(k), k) for k in registry.choices()], value=key), \
            registry.describe(key)

    def show_counts(choice: str) -> tuple[Any, ...]:
        """Only the settings the chosen program uses: GAN iterations, U-Net steps and encoder, the ablation
        letter, D's width."""
        return (gr.Number(visible=choice != "unet"), gr.Number(visible=choice != "gan"),
                gr.Radio(visible=choice == "gan"), gr.Number(visible=choice != "unet"),
                gr.Radio(visible=choice != "gan"))

    with gr.Tab("Train", id="train", visible=access.offered):
        if access.why:
            gr.Markdown(f"**Who may train:** {access.why}", elem_id="train-access")
        if access.login:
            gr.LoginButton()
        with gr.Row():
            program = gr.Radio([("whole pipeline", "pipeline"), ("GAN only", "gan"),
                                ("U-Net for the selected model", "unet")], value="gan", label="program")
            dataset = gr.Dropdown(jobs.list_datasets(data), value="synthetic", label="dataset",
                                  info="synthetic, or a folder under the data root")
            size = gr.Radio(list(SIZES), value=32, label="resolution",
                            info="pipeline presets: 32 tiny, 64 cpu, 128 paper")
        with gr.Row():
            iters = gr.Number(200, precision=0, minimum=1, maximum=jobs.MAX_ITERS, label="GAN iterations",
                              elem_id="iters", info="training steps of the generator")
            unet_steps = gr.Number(200, precision=0, minimum=1, maximum=jobs.MAX_ITERS, label="U-Net steps",
                                   elem_id="unet-steps", visible=False,
                                   info="training steps of the segmenter, on the GAN's pictures")
            ablation = gr.Radio(list(ABLATIONS), value="E", label="method variant (the paper's ablation A–E)",
                                info="E: the full method; A–D leave parts out", elem_id="ablation")
            d_width = gr.Number(0, precision=0, minimum=0, maximum=jobs.D_WIDTH["hi"], label="discriminator width",
                                elem_id="d-width", info="channels of D's first block; 0 or empty: the generator's")
            unet_encoder = gr.Radio([(ENCODER_LABELS[e], e) for e in jobs.ENCODERS],
                                    value=jobs.TrainSettings.unet_encoder, label="U-Net encoder",
                                    elem_id="unet-encoder", visible=False)
            threads = gr.Slider(1, jobs.MAX_THREADS, 1, step=1, label="CPU threads")
        with gr.Row():
            start_btn = gr.Button("Start", variant="primary")
            stop_btn = gr.Button("Stop", variant="stop")
            runs_dd = gr.Dropdown(initial_runs, value=next(iter(initial_runs), None), label="run",
                                  allow_custom_value=False, scale=2)
            resume_btn = gr.Button("Resume run")
            load_btn = gr.Button("Load result into Explore / Segment")
        first = status(jobs.job_status(runs)) if access.offered and not access.restricted else \
            f"**Idle** — {access.why or 'training is disabled on this server'}"
        status_md = gr.Markdown(first, elem_id="train-status")
        with gr.Row():
            plot = gr.Plot(label="training curves (from the first logged step; log.jsonl)", scale=3,
                           elem_id="curves")
            sample = output_image("latest samples: rows background, object layer, mask, picture", scale=2)
        tail = gr.Textbox(label="output", lines=6, max_lines=12, interactive=False)
        seen = gr.State("")
        timer = gr.Timer(POLL_S, active=access.offered)

    start_btn.click(train_start, [model_state, program, dataset, size, iters, ablation, unet_steps, threads, d_width,
                                  unet_encoder],
                    [status_md, runs_dd], api_name="train_start", concurrency_id="jobs", concurrency_limit=1)
    stop_btn.click(train_stop, None, status_md, api_name="train_stop", concurrency_id="jobs")
    resume_btn.click(train_resume, runs_dd, [status_md, runs_dd], api_name="train_resume", concurrency_id="jobs")
    timer.tick(train_poll, [runs_dd, seen], [status_md, tail, plot, sample, seen], api_name="train_poll",
               show_progress="hidden", trigger_mode="always_last", concurrency_id="poll")
    load_btn.click(train_load, runs_dd, [model_state, model_dd, model_info], api_name="train_load")
    program.change(show_counts, program, [iters, unet_steps, ablation, d_width, unet_encoder],
                   api_name="train_show_counts", queue=False, show_progress="hidden")
    if access.offered:  # the runs as they are now (a run finished since the app started shows after a reload),
        # listed per visitor: only those who may train see them
        demo.load(train_view, None, [status_md, runs_dd], api_name="train_view", show_progress="hidden")
