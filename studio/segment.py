"""The Segment tab as plain functions: a user's file in, mask / overlay / cut-out / new background out.

Uploads are untrusted: any size, any mode (RGBA, greyscale, 16-bit, palette, CMYK), EXIF-rotated
phone photos, or not an image at all. The app hands this module the *path* of the uploaded file
(Gradio never decodes it), and every read goes through ``elgan.data.base.load_image`` -- verified,
EXIF-rotated, converted to RGB, refused above its pixel limit -- after a file-size check. Every
refusal is an :class:`UploadError` whose message the app shows as is.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from elgan.bundle import ModelBundle
from elgan.data.base import MAX_PIXELS, DataError, load_image
from elgan.domain import feature_net, image_distance
from elgan.evaluate import segment_photo
from elgan.visualize import save_png, to_uint8

from .registry import LRU, StudioError, trained_on
from .render import latent_code

log = logging.getLogger("studio")

MAX_UPLOAD_BYTES = 20 * 1024**2  # 20 MB: larger than any photo a phone takes, small enough to decode quickly
MAX_UPLOAD_PIXELS = MAX_PIXELS  # the library's decompression-bomb limit (50 megapixels)
MAX_UPLOAD_SIDE = 12_000  # checked on the header too: a 20000 x 2000 strip is under 50 MP but no photo
WORK_SIDE = 1024  # photos are shrunk so their longer side is at most this: results stay quick to send
MIN_SIDE = 8
MAX_ASPECT = 10.0
EDGE_SOFTNESS = 0.1  # alpha ramps from 0 to 1 over this much probability around the threshold


class UploadError(StudioError):
    """An uploaded file cannot be segmented; the message says why in the user's terms."""


def upload_path(payload: Any) -> str | None:
    """The server-side path of an upload: a path string, Gradio's file dict, or None (nothing uploaded)."""
    if payload is None or payload == "":
        return None
    if isinstance(payload, (str, Path)):
        return str(payload)
    if isinstance(payload, Mapping) and isinstance(payload.get("path"), str):
        return payload["path"]
    raise UploadError("the upload did not arrive as a file; drop an image file onto the box")


def read_upload(path: str | Path, label: str | None = None) -> Image.Image:
    """The uploaded image as RGB, shrunk to WORK_SIDE at most; UploadError if it is not usable."""
    p = Path(path)
    name = label or p.name
    if not p.is_file():
        raise UploadError(f"{name}: the uploaded file is gone; upload it again")
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name} is {size / 1024**2:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 1024**2} MB")
    if size == 0:
        raise UploadError(f"{name} is empty")
    try:
        image = load_image(p, label=name, max_side=MAX_UPLOAD_SIDE)
    except DataError as exc:
        raise UploadError(f"not a readable image: {exc}") from None
    w, h = image.size
    if w * h > MAX_UPLOAD_PIXELS:
        raise UploadError(f"{name} is {w}x{h}; the limit is {MAX_UPLOAD_PIXELS / 1e6:.0f} megapixels")
    if min(w, h) < MIN_SIDE or max(w, h) / min(w, h) > MAX_ASPECT:
        raise UploadError(f"{name} is {w}x{h}; need at least {MIN_SIDE} px a side and an aspect ratio "
                          f"up to {MAX_ASPECT:g}:1")
    if max(w, h) > WORK_SIDE:
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


class Segmentation(NamedTuple):
    probability: np.ndarray  # [H, W] float32 foreground probability
    alpha: np.ndarray  # [H, W] float32 in [0, 1]: the threshold with a soft edge
    mask: np.ndarray  # uint8 [H, W, 3]: white = foreground (thresholded)
    overlay: np.ndarray  # uint8 [H, W, 3]: background dimmed and tinted, foreground as is
    cutout: np.ndarray  # uint8 [H, W, 4]: the photo with alpha (lossless PNG in the app)


def soft_alpha(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Alpha in [0, 1]: 0.5 at the threshold, ramping over EDGE_SOFTNESS (no jagged hard edge)."""
    return np.clip((probability - threshold) / EDGE_SOFTNESS + 0.5, 0.0, 1.0).astype(np.float32)


def cleaning_note(model: ModelBundle, clean: bool) -> str:
    """The caption's words on the mask cleaning ("" for a model without one)."""
    if model.unet is None or model.unet.cfg.postprocess == "none":
        return ""
    return " · mask cleaned: largest region, holes filled" if clean else " · raw mask (cleaning off)"


@torch.inference_mode()
def segment(model: ModelBundle, image: Image.Image, threshold: float = 0.5, clean: bool = True) -> Segmentation:
    """F_theta on the whole photo at its own aspect ratio (shorter side -> the U-Net's resolution); with
    `clean` the mask is cleaned as the model's scores were measured (its U-Net's postprocess), without it
    the raw thresholded mask is shown."""
    if model.unet is None:
        raise StudioError("this model has no U-Net (a GAN-only checkpoint); select a pipeline bundle, or "
                          "train a U-Net for it in the Train tab")
    if not 0.0 < threshold < 1.0:
        raise StudioError(f"threshold must be in (0, 1), got {threshold}")
    rgb = np.asarray(image.convert("RGB"))  # [H, W, 3]
    prob = segment_photo(model.unet, image, model.unet_size, threshold,
                         None if clean else "none")  # [H, W] float32
    fg = prob > threshold
    alpha = soft_alpha(prob, threshold)
    tint = np.array([30, 60, 160], np.float32)
    overlay = np.where(fg[..., None], rgb, 0.35 * rgb + 0.65 * 0.5 * tint).astype(np.uint8)
    mask = np.repeat((fg * 255).astype(np.uint8)[..., None], 3, -1)
    cutout = np.concatenate([rgb, (alpha * 255 + 0.5).astype(np.uint8)[..., None]], -1)
    return Segmentation(prob, alpha, mask, overlay, cutout)


class DomainCheck(NamedTuple):
    distance: float  # of the upload's features from the training images' (elgan.domain; ~1 = typical)
    threshold: float  # the bundle's: past it, the upload counts as unlike the training images
    unlike: bool
    trained_on: str  # what the model learnt from, in plain words
    note: str  # a short caption piece with the numbers


_distances: LRU[tuple[str, str, int, int], float] = LRU(256)  # a threshold or seed change re-runs Segment


def domain_check(model: ModelBundle, image: Image.Image, path: str | Path | None = None) -> DomainCheck | None:
    """How far the image is from the model's training images; None when the bundle stores no statistics
    (or the feature net's package is missing: then the app segments as before, without the check).

    The distance of one upload is cached by (model, file, size, time): moving the threshold or drawing a
    new background re-runs Segment on the same file, and the check costs more than the mask itself.
    """
    stats = model.domain
    if stats is None:
        return None
    key = None
    if path is not None and Path(path).is_file():
        st = Path(path).stat()
        key = (model.path, str(path), st.st_size, st.st_mtime_ns)
    distance = _distances.get(key) if key is not None else None
    if distance is None:
        try:
            distance = image_distance(stats, image, next(model.generator.parameters()).device)
        except RuntimeError as exc:  # FeatureNetMissing: an install without the package; not the visitor's fault
            log.warning("domain check skipped: %s", exc)
            return None
        if key is not None:
            _distances.put(key, distance)
    unlike = stats.is_unlike(distance)
    note = (f"<span class='notation'>distance from the training images {distance:.2f} (warning above "
            f"{stats.threshold:.2f})</span>")
    return DomainCheck(distance, stats.threshold, unlike, trained_on(model.metadata), note)


def warm_domain_check(registry: Any) -> threading.Thread | None:
    """Build the feature net in the background when a loaded model stores statistics: it takes seconds,
    and the first visitor's upload should not wait for it (nothing is loaded when no model checks)."""
    models = [m for m in registry.loaded() if m.domain is not None]
    if not models:
        return None
    device = next(models[0].generator.parameters()).device

    def build() -> None:
        try:
            feature_net(device)
        except RuntimeError as exc:  # the package is missing: domain_check says so on first use
            log.warning("domain check unavailable: %s", exc)

    thread = threading.Thread(target=build, daemon=True, name="warm-domain-check")
    thread.start()
    return thread


def warning_text(check: DomainCheck | None) -> str:
    """The Segment tab's warning in plain words ('' when the image looks like the training images)."""
    if check is None or not check.unlike:
        return ""
    return (f"<div class='domain-warning'>⚠️ <b>This image looks unlike the images this model was trained "
            f"on</b> ({html.escape(check.trained_on)}); <b>its mask may be wrong.</b> The model only learnt what "
            "objects look like in those pictures.</div>")


@torch.inference_mode()
def replace_background(model: ModelBundle, image: Image.Image, alpha: np.ndarray, seed: int) -> np.ndarray:
    """The photo's foreground over a background G_b(z) drawn from `seed`, resized to cover the photo."""
    w, h = image.size
    bg = to_uint8(model.generator.background(latent_code(model, seed))[0])  # [s, s, 3]
    side = max(w, h)  # square background scaled to cover, then centre-cropped
    bg_img = Image.fromarray(bg).resize((side, side), Image.Resampling.BICUBIC)
    left, top = (side - w) // 2, (side - h) // 2
    bg_arr = np.asarray(bg_img.crop((left, top, left + w, top + h)), np.float32)
    a = alpha[..., None]
    return (a * np.asarray(image.convert("RGB"), np.float32) + (1 - a) * bg_arr + 0.5).astype(np.uint8)


def write_examples(model: ModelBundle | None, folder: str | Path, n_synthetic: int = 3,
                   n_model: int = 2, size: int = 128) -> list[str]:
    """Example uploads made by the project itself (no third-party images), written once at start:

    held-out scenes of the embedded synthetic dataset (test split, never trained on), one of them as a
    16-bit greyscale PNG and one with transparency (the modes that break naive readers), and
    composites sampled from the model. Returns the file paths. Writes are atomic: two app processes
    starting together (tests in parallel) never serve each other half a file.
    """
    from elgan.data.synthetic import render_synthetic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    for i in range(n_synthetic):
        image, mask, _ = render_synthetic("test", i, size)  # [S, S, 3] uint8, [S, S] {0, 1}
        path = folder / f"synthetic-test-{i}.png"
        save_png(image, path)
        paths.append(str(path))
    image, mask, _ = render_synthetic("test", n_synthetic, size)
    grey16 = (np.asarray(Image.fromarray(image).convert("L"), np.uint16) * 257).astype(np.uint16)
    path = folder / "synthetic-grey16.png"
    save_png(grey16, path)  # 16-bit greyscale ("I;16")
    paths.append(str(path))
    image, mask, _ = render_synthetic("test", n_synthetic + 1, size)
    rgba = np.concatenate([image, np.where(mask > 0, 255, 96).astype(np.uint8)[..., None]], -1)
    path = folder / "synthetic-rgba.png"
    save_png(rgba, path)
    paths.append(str(path))
    if model is not None:
        paths += write_model_samples(model, folder, "generated", n_model, size)
    return paths


def write_model_samples(model: ModelBundle, folder: str | Path, prefix: str, n: int = 2,
                        size: int = 128) -> list[str]:
    """`n` composites of the model's own generator (fixed seed) as <prefix>-<i>.png: example uploads for a
    model trained on photos we may not redistribute (e.g. the horse bundle), made by the model itself."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if n <= 0:
        return []
    with torch.inference_mode():
        z, c = model.generator.sample_codes(n, torch.Generator().manual_seed(1))
        images = to_uint8(model.generator(z, c).image)  # [n, s, s, 3]
    paths = []
    for i, im in enumerate(images):
        path = folder / f"{prefix}-{i}.png"
        save_png(np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC)), path)
        paths.append(str(path))
    return paths
