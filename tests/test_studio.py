"""The app's handlers as plain functions (studio), on a freshly initialised tiny bundle at 32 px."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elgan.bundle import save_model_bundle
from elgan.cleanup import largest_filled
from elgan.config import GeneratorConfig, PerturbConfig, PhiConfig, UNetConfig
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform
from elgan.nets.unet import UNet
from studio import curves, jobs, render, segment
from studio.registry import UNTRAINED, ModelError, ModelRegistry, StudioError, discover_models

ZERO = (0.0,) * len(render.Z_DIMS)


def write_tiny_bundle(path: Path, perturb: PerturbConfig | None = None, with_unet: bool = True) -> Path:
    """Generator width 4 at 32 px, Phi, a small U-Net: seconds to build, milliseconds to run."""
    perturb = perturb or PerturbConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = LayeredGenerator(GeneratorConfig(size=32, width=4)).eval()
        phi = LatentTransform(PhiConfig(eps_dim=perturb.eps_dim)).eval()
        unet = UNet(UNetConfig(base=4, depth=3), input_size=32).eval() if with_unet else None
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model_bundle(path, g, phi, perturb, unet, metadata={"preset": "test"})
    return path




@pytest.fixture()
def reg(tmp_path: Path) -> tuple[ModelRegistry, str]:
    write_tiny_bundle(tmp_path / "checkpoints" / "default.safetensors")
    return ModelRegistry(tmp_path / "checkpoints", tmp_path / "runs"), "default.safetensors"  # its public key


# ---- registry ---------------------------------------------------------------------------------------

def test_discovery_prefers_default_and_falls_back(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoints"
    assert ModelRegistry(ck, tmp_path / "runs").default() == UNTRAINED  # nothing on disk: the fallback
    write_tiny_bundle(ck / "a.safetensors")
    write_tiny_bundle(ck / "default.safetensors")
    run = tmp_path / "runs" / "00000-gan-synthetic-32-E"
    write_tiny_bundle(run / "best.safetensors")
    (run / "config.json").write_text(json.dumps({"generator": {}}))
    unet_run = tmp_path / "runs" / "00001-unet-synthetic-32-unet"
    write_tiny_bundle(unet_run / "best.safetensors")
    (unet_run / "config.json").write_text(json.dumps({"unet": {}}))  # no generator: not a model
    found = [p.relative_to(tmp_path).as_posix() for p in discover_models(ck, tmp_path / "runs")]
    assert found == ["checkpoints/default.safetensors", "checkpoints/a.safetensors",
                     "runs/00000-gan-synthetic-32-E/best.safetensors"]
    reg = ModelRegistry(ck, tmp_path / "runs")
    assert reg.choices() == ["default.safetensors", "a.safetensors", "00000-gan-synthetic-32-E/best.safetensors",
                             UNTRAINED]  # public keys, in the selector's order
    assert reg.default() == "default.safetensors"
    assert "untrained" in reg.describe(UNTRAINED)


def test_registry_loads_once_and_refuses_other_paths(reg, tmp_path: Path) -> None:
    registry, key = reg
    assert registry.get(key) is registry.get(key)
    path = str((tmp_path / "checkpoints" / "default.safetensors").resolve())
    assert registry.key_of(path) == key and registry.get(path) is registry.get(key)  # a listed path: its key
    outside = write_tiny_bundle(tmp_path / "elsewhere" / "x.safetensors")
    with pytest.raises(ModelError, match="not a selectable model"):
        registry.get(str(outside))
    with pytest.raises(ModelError, match="not a selectable model"):
        registry.get("/etc/passwd")
    broken = tmp_path / "checkpoints" / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot load"):
        registry.get("broken.safetensors")
    assert registry.get(UNTRAINED).metadata["untrained"] is True


# ---- explore ----------------------------------------------------------------------------------------

def test_render_layers_caches_background_per_z(reg) -> None:
    registry, key = reg
    a = render.render_layers(registry, key, 7, ZERO, 12, {})
    assert a.image.shape == (1, 3, 32, 32) and a.mask.shape == (1, 1, 32, 32)
    misses = registry.backgrounds.misses
    b = render.render_layers(registry, key, 7, ZERO, 13, {})  # c only: background reused
    assert registry.backgrounds.misses == misses and torch.equal(a.background, b.background)
    c = render.render_layers(registry, key, 7, (0.5,) + ZERO[1:], 13, {})  # z changed: recomputed
    assert registry.backgrounds.misses == misses + 1 and not torch.equal(b.background, c.background)
    model = registry.get(key)
    with torch.inference_mode():
        z = render.latent_code(model, 7, ZERO)
        ref = model.generator(z, torch.tensor([13]))
    assert torch.allclose(ref.image, b.image, atol=1e-6)


def test_views_and_cutout(reg) -> None:
    registry, key = reg
    layers = render.render_layers(registry, key, 1, ZERO, 0, {"tx": 0.5})
    views = render.layer_views(layers)
    assert {k: v.shape for k, v in views.items()} == {
        "background": (256, 256, 3), "foreground": (256, 256, 3), "mask": (256, 256, 3),
        "image": (256, 256, 3), "cutout": (256, 256, 4)}
    alpha = views["cutout"][::8, ::8, 3].astype(int)
    assert np.abs(alpha - views["mask"][::8, ::8, 0].astype(int)).max() <= 1
    native = render.layer_views(layers, target=None)  # what Explore sends: the model's size, upscaled by CSS
    assert {k: v.shape[:2] for k, v in native.items()} == dict.fromkeys(views, (32, 32))
    assert all(np.array_equal(views[k], native[k].repeat(8, 0).repeat(8, 1)) for k in views)


def test_compare_is_exact_at_zero_and_moves_with_eps(reg) -> None:
    registry, key = reg
    panel, diff = render.compare_walk(registry, key, 3, ZERO, 5, {"rotation": 0.0})
    assert diff < 1e-6 and panel.shape == (256, 3 * 256 + 8, 3)  # Phi(0) = 0 and T_0 = identity
    native, _ = render.compare_walk(registry, key, 3, ZERO, 5, {"rotation": 0.0}, target=None)
    assert native.shape == (32, 3 * 32 + 8, 3)
    _, diff = render.compare_walk(registry, key, 3, ZERO, 5, {"tx": 2.5})
    assert diff > 0


def test_link_and_bad_inputs(reg, tmp_path: Path) -> None:
    registry, key = reg
    assert render.DIRECTIONS == PerturbConfig().eps_names and tuple(render.MOVE_NAMES) == render.DIRECTIONS
    with pytest.raises(StudioError, match="c must be"):
        render.render_layers(registry, key, 0, ZERO, 200, {})
    with pytest.raises(StudioError, match="eps"):
        render.render_layers(registry, key, 0, ZERO, 0, {"tx": 9.0})
    with pytest.raises(StudioError, match="unknown direction"):
        render.render_layers(registry, key, 0, ZERO, 0, {"shear": 0.1})
    with pytest.raises(StudioError, match="seed"):
        render.render_layers(registry, key, -1, ZERO, 0, {})
    no_rot = write_tiny_bundle(tmp_path / "checkpoints" / "c.safetensors", PerturbConfig(rotate=False))
    with pytest.raises(StudioError, match="without the 'rotation'"):
        render.direction_strip(registry, str(no_rot), 0, ZERO, 0, "rotation")
    layers = render.render_layers(registry, str(no_rot), 0, ZERO, 0, {"rotation": 1.0})  # ignored there
    assert layers.image.shape == (1, 3, 32, 32)


def test_grids_follow_fig6(reg) -> None:
    registry, key = reg
    g = render.variation_grid(registry, key, 4, 37, render.GRID_MODES[1], n=6)
    tile, pad, scale = 32, 2, 4
    assert g.shape == ((4 * (tile + pad) + pad) * scale, (6 * (tile + pad) + pad) * scale, 3)
    step = (tile + pad) * scale
    first_bg = g[pad * scale:pad * scale + tile * scale, pad * scale:pad * scale + tile * scale]
    for i in range(1, 6):  # varying c leaves the background row unchanged
        x = pad * scale + i * step
        assert np.array_equal(g[pad * scale:pad * scale + tile * scale, x:x + tile * scale], first_bg)
    z_grid = render.variation_grid(registry, key, 4, 37, render.GRID_MODES[0], n=6)
    assert not np.array_equal(z_grid[:step], g[:step])
    with pytest.raises(StudioError):
        render.variation_grid(registry, key, 4, 37, "sideways")


def test_strip_marks_training_range(reg) -> None:
    registry, key = reg
    strip, ts = render.direction_strip(registry, key, 0, ZERO, 0, "scale", n=7, limit=3.0)
    assert len(ts) == 7 and ts[0] == -3.0 and ts[-1] == 3.0
    scale = 4
    band = strip[-4 * scale]  # a row through the bars
    greens = [bool((band[(2 + i * 34) * scale + 10] == (60, 170, 80)).all()) for i in range(7)]
    assert greens == [abs(t) <= 1 for t in ts]
    one_row, _ = render.direction_strip(registry, key, 0, ZERO, 0, "tx", n=7, with_true=False)
    assert one_row.shape[0] < strip.shape[0]


# ---- segment ----------------------------------------------------------------------------------------

def _save(img: Image.Image, path: Path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


def test_uploads_of_every_mode(tmp_path: Path) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8))
    grey16 = Image.fromarray((np.arange(60 * 90).reshape(60, 90) * 7).astype(np.uint16))
    paths = [_save(rgb.convert("RGBA"), tmp_path / "a.png"), _save(grey16, tmp_path / "b.png"),
             _save(rgb.convert("P"), tmp_path / "c.png"), _save(rgb.convert("CMYK"), tmp_path / "d.jpg")]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: width and height swap when read
    paths.append(_save(rgb, tmp_path / "e.jpg", exif=exif))
    sizes = [segment.read_upload(p).size for p in paths]
    assert sizes == [(90, 60)] * 4 + [(60, 90)]
    assert all(segment.read_upload(p).mode == "RGB" for p in paths)
    big = _save(Image.new("RGB", (3000, 1500)), tmp_path / "big.png")
    assert segment.read_upload(big).size == (1024, 512)  # shrunk to WORK_SIDE


def test_bad_uploads_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(segment.UploadError, match="not a readable image"):
        segment.read_upload(junk)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(segment.UploadError, match="empty"):
        segment.read_upload(empty)
    with pytest.raises(segment.UploadError, match="gone"):
        segment.read_upload(tmp_path / "missing.png")
    thin = _save(Image.new("RGB", (400, 20)), tmp_path / "thin.png")
    with pytest.raises(segment.UploadError, match="aspect"):
        segment.read_upload(thin)
    monkeypatch.setattr(segment, "MAX_UPLOAD_BYTES", 100)
    ok = _save(Image.new("RGB", (64, 64), (9, 9, 9)), tmp_path / "ok.bmp")
    with pytest.raises(segment.UploadError, match="limit"):
        segment.read_upload(ok)
    assert segment.upload_path({"path": "/x/y.png", "orig_name": "y.png"}) == "/x/y.png"
    assert segment.upload_path(None) is None
    with pytest.raises(segment.UploadError):
        segment.upload_path(b"bytes")


def test_segment_outputs(reg, tmp_path: Path) -> None:
    registry, key = reg
    model = registry.get(key)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    seg = segment.segment(model, image, 0.5)
    assert seg.probability.shape == (50, 70) and seg.mask.shape == (50, 70, 3)
    assert seg.overlay.shape == (50, 70, 3) and seg.cutout.shape == (50, 70, 4)
    assert np.array_equal(seg.cutout[..., :3], np.asarray(image))
    buf = io.BytesIO()
    Image.fromarray(seg.cutout).save(buf, "PNG")  # lossless RGBA round trip
    assert np.array_equal(np.asarray(Image.open(buf)), seg.cutout)
    new = segment.replace_background(model, image, seg.alpha, seed=3)
    assert new.shape == (50, 70, 3) and new.dtype == np.uint8
    with pytest.raises(StudioError, match="threshold"):
        segment.segment(model, image, 1.5)
    gan_only = write_tiny_bundle(tmp_path / "checkpoints" / "gan.safetensors", with_unet=False)
    with pytest.raises(StudioError, match="no U-Net"):
        segment.segment(registry.get(gan_only.name), image)


def test_segment_cleans_as_the_model_says_unless_told_not_to(reg) -> None:
    registry, key = reg
    model = registry.get(key)
    unet = copy.deepcopy(model.unet)
    unet.cfg = dataclasses.replace(unet.cfg, postprocess="largest_filled")
    cleaning = dataclasses.replace(model, unet=unet)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    t = float(np.median(segment.segment(model, image, 0.5).probability))  # an untrained U-Net: half object
    raw = segment.segment(model, image, t)
    cleaned = segment.segment(cleaning, image, t)
    assert np.array_equal(cleaned.mask[..., 0] > 0, largest_filled(raw.mask[..., 0] > 0))
    assert not np.array_equal(cleaned.mask, raw.mask)  # this untrained U-Net's mask has regions to drop
    assert np.array_equal(segment.segment(cleaning, image, t, clean=False).mask, raw.mask)
    assert np.array_equal(segment.segment(model, image, t, clean=True).mask, raw.mask)  # nothing to clean by
    assert "holes filled" in segment.cleaning_note(cleaning, True)
    assert "raw" in segment.cleaning_note(cleaning, False) and segment.cleaning_note(model, True) == ""


def test_examples_are_readable(reg, tmp_path: Path) -> None:
    registry, key = reg
    paths = segment.write_examples(registry.get(key), tmp_path / "ex", n_synthetic=2, n_model=1, size=64)
    assert len(paths) == 5
    modes = {Path(p).name: Image.open(p).mode for p in paths}
    assert modes["synthetic-grey16.png"].startswith("I") and modes["synthetic-rgba.png"] == "RGBA"
    assert all(segment.read_upload(p).mode == "RGB" for p in paths)
    other = write_tiny_bundle(tmp_path / "checkpoints" / "horse.safetensors")
    assert registry.shipped() == [key, other.name]  # default first; runs are not shipped; keys, not paths
    samples = segment.write_model_samples(registry.get(other.name), tmp_path / "ex",
                                          "horse-generated", 2)
    assert [Path(p).name for p in samples] == ["horse-generated-0.png", "horse-generated-1.png"]
    assert Image.open(samples[0]).size == (128, 128)


# ---- train: settings, argv, process control, curves --------------------------------------------------

def test_settings_are_validated(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "horses").mkdir(parents=True)
    assert jobs.list_datasets(root) == ["synthetic", "horses"]
    assert jobs.data_spec("horses", root) == f"folder:{(root / 'horses').resolve()}"
    ok = jobs.TrainSettings(program="gan", dataset="horses", size=64, iters=100)
    assert jobs.validate(ok, root) == ok
    for bad, match in [(dict(program="rm -rf /"), "program"), (dict(dataset="../etc"), "dataset"),
                       (dict(dataset="/etc"), "dataset"), (dict(size=48), "resolution"),
                       (dict(iters=0), "iterations"), (dict(iters=10**9), "iterations"),
                       (dict(ablation="F"), "ablation"), (dict(threads=999), "threads"),
                       (dict(program="unet", gan_bundle="/tmp/x.safetensors"), "GAN bundle")]:
        with pytest.raises(jobs.JobError, match=match):
            jobs.validate(jobs.TrainSettings(**bad), root)
    argv = jobs.build_argv(ok, tmp_path / "runs" / "r", root)
    assert argv[:3] == [sys.executable, "-m", "training.train_gan"] and all(isinstance(a, str) for a in argv)
    assert argv[argv.index("--data") + 1].startswith("folder:") and "--width" in argv
    pipe = jobs.build_argv(jobs.TrainSettings(program="pipeline", size=32), tmp_path / "r", None)
    assert pipe[2] == "training.pipeline" and pipe[pipe.index("--preset") + 1] == "tiny"
    assert jobs.build_argv(ok, tmp_path / "r", root, resume=True)[-3:] == ["--resume", "--threads", "1"]


def test_run_folders_are_numbered(tmp_path: Path) -> None:
    s = jobs.TrainSettings(program="gan", dataset="synthetic", size=32, ablation="C")
    a, b = jobs.new_run_dir(tmp_path, s), jobs.new_run_dir(tmp_path, s)
    assert (a.name, b.name) == ("00000-gan-synthetic-32-C", "00001-gan-synthetic-32-C")
    with pytest.raises(jobs.JobError):
        jobs.run_folder(tmp_path, "../x")


SLEEPER = ("import subprocess, sys, time, pathlib; "
           "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
           "pathlib.Path(sys.argv[1]).write_text(str(child.pid)); time.sleep(60)")


def test_one_job_at_a_time_and_stop_kills_the_group(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = jobs.new_run_dir(runs, jobs.TrainSettings())
    child_file = tmp_path / "child.pid"
    record = {"settings": asdict(jobs.TrainSettings())}
    st = jobs._launch([sys.executable, "-c", SLEEPER, str(child_file)], run, runs, record)
    assert st.running and (runs / jobs.LOCK).is_file()
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start_job(jobs.TrainSettings(), runs, None)
    deadline = time.monotonic() + 20
    while not child_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(child_file.read_text())
    assert jobs.job_status(runs).running
    stopped = jobs.stop_job(runs)
    assert stopped.stopped and not (runs / jobs.LOCK).exists()
    deadline = time.monotonic() + 5
    while jobs._alive(child, None) and time.monotonic() < deadline:  # the grandchild died with the group
        time.sleep(0.05)
    assert not jobs._alive(child, None)
    status = jobs.job_status(runs, run.name)
    assert not status.running and status.stopped and "stopped" in status.message
    assert jobs.stop_job(runs).message == "no training job is running"


def test_stale_lock_is_cleared(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = jobs.new_run_dir(runs, jobs.TrainSettings())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (runs / jobs.LOCK).write_text(json.dumps({"pid": dead.pid, "ticks": 1, "run_dir": str(run)}))
    assert not jobs.job_status(runs).running and not (runs / jobs.LOCK).exists()


def test_curves_read_growing_logs(tmp_path: Path) -> None:
    run = tmp_path / "00000-pipeline-synthetic-32-E"
    (run / "gan" / "samples").mkdir(parents=True)
    (run / "unet").mkdir()
    gan = [{"step": i, "d_adv": 1.0 / i, "g_adv": 0.5, "mask_area": 0.3, "imgs_per_s": 10.0} for i in (1, 2, 3)]
    (run / "gan" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gan) + '{"step": 4, "d_a')
    (run / "unet" / "log.jsonl").write_text(json.dumps({"step": 5, "loss": 0.7, "lr": 1e-3}) + "\n")
    Image.new("RGB", (8, 8)).save(run / "gan" / "samples" / "0000003.png")
    logs = curves.read_logs(run)
    assert [r["step"] for r in logs["gan"]] == [1, 2, 3] and len(logs["unet"]) == 1  # cut line skipped
    fig = curves.figure(logs)
    assert {t.name for t in fig.data} == {"d_adv", "g_adv", "mask_area", "imgs_per_s", "unet: loss"}
    assert curves.latest_sample(run).name == "0000003.png"
    assert curves.progress_line(logs) == "GAN step 3 (g_adv 0.5), U-Net step 5 (loss 0.7)"
    sig = curves.signature(run)
    with open(run / "unet" / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "loss": 0.6}) + "\n")
    assert curves.signature(run) != sig


def test_curves_put_layer_health_in_its_own_panel_and_warn(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    recs = [{"step": 25, "g_adv": 0.5, "mask_area": 0.4, "health_ex_top1": 0.1, "health_bg_minus_composite": -0.3,
             "FD-Lite0": 120.0, "imgs_per_s": 30.0},
            {"step": 50, "g_adv": 0.4, "mask_area": 0.5, "health_ex_top1": 0.2, "health_bg_minus_composite": 0.2,
             "imgs_per_s": 31.0, "health_warning": "background layer alone scores as real as the composite"}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    fig = curves.figure(curves.read_logs(run))
    axis_of = {t.name: t.xaxis for t in fig.data}
    # layer health together, FD and speed each on an axis of their own (FD ~100 and images/s ~30 never share)
    assert axis_of["mask_area"] == axis_of["health_ex_top1"] == axis_of["health_bg_minus_composite"]
    assert len({axis_of["g_adv"], axis_of["mask_area"], axis_of["FD-Lite0"], axis_of["imgs_per_s"]}) == 4
    line = curves.progress_line(curves.read_logs(run))
    assert line.startswith("GAN step 50") and "warning: background layer alone" in line
