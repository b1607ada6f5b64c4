"""The evaluation protocol of Table 1 and the metrics over a data spec.

Protocol (ReDO / IEM, which the paper follows): each test image and its mask are resized (shorter side)
and centre-cropped to 128 x 128 -- the *evaluation* resolution -- and the truth is mask > 0.5. A U-Net
trained at a lower resolution (e.g. 64 on CPU) sees the 128 image resized to its own size; its
predicted *probability* is upsampled bilinearly back to 128 and only then thresholded at 0.5, so every
model is scored on the same 128 x 128 pixels whatever resolution it works at.

Segmentation by inversion (``evaluate_inversion_detailed``) is scored on the same pixels: G's own mask
of each inverted test image takes the U-Net's place, upsampled and thresholded the same way.

A model whose ``UNetConfig.postprocess`` is set has its thresholded mask cleaned (elgan/cleanup.py) before
it is scored, as the app and the folder tool clean it: the step is part of the model.

Scores use the dataset-level convention by default (see ``metrics.py``); per-image IoUs are kept so
reports can show the best and worst cases.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .cleanup import clean_batch, clean_probability
from .invert import InversionConfig
from .metrics import ScoreAccumulator, SegmentationScores
from .nets.generator import LayeredGenerator
from .nets.unet import Segmenter

EVAL_SIZE = 128  # the literature's evaluation resolution
THRESHOLD = 0.5  # prediction and truth are binarised at 0.5
PROTOCOL = "resize shorter side + centre crop"  # how images and masks reach EVAL_SIZE, recorded with scores


class Evaluation(NamedTuple):
    scores: SegmentationScores  # ACC / IoU / mIoU in the requested convention
    per_image_iou: torch.Tensor  # [N] foreground IoU of each image (float64)
    paths: list[str] | None  # source of each image, when the dataset knows it
    counts: torch.Tensor  # [N, 4] per-image (tp, fp, fn, tn) pixel counts at the threshold


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def predict_probs(unet: Segmenter, images: torch.Tensor, input_size: int | None = None,
                  postprocess: str | None = None) -> torch.Tensor:
    """The protocol's forward pass: uint8 [B, 3, S, S] -> foreground probability [B, 1, S, S] (CPU).

    The images go to the model's resolution (`input_size`, default ``unet.input_size``; None keeps S)
    and the probability comes back to S bilinearly, before any threshold; then the model's cleaning
    (`postprocess`, default ``unet.cfg.postprocess``) at the protocol's threshold.
    """
    size = input_size or unet.input_size
    s = images.shape[-1]
    x = images.to(_device(unet)).float() / 127.5 - 1  # [B, 3, S, S] in [-1, 1]
    if size and size != s:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    prob = torch.sigmoid(unet(x))  # [B, 1, size, size]
    if prob.shape[-2:] != images.shape[-2:]:
        prob = F.interpolate(prob, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return clean_batch(prob.cpu(), THRESHOLD, postprocess or unet.cfg.postprocess)


def score_predictions(predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                      masks: torch.Tensor, convention: str = "dataset", batch: int = 64,
                      paths: list[str] | None = None, progress: bool = False) -> Evaluation:
    """Score `predict` (uint8 images [B, 3, S, S] -> probabilities [B, 1, S, S]) against masks {0, 1}."""
    if images.shape[0] != masks.shape[0] or images.shape[0] == 0:
        raise ValueError(f"need as many masks as images (> 0), got {images.shape[0]} and {masks.shape[0]}")
    acc = ScoreAccumulator()
    for i in tqdm(range(0, images.shape[0], batch), desc="evaluate", unit="batch", disable=not progress):
        acc.update(predict(images[i:i + batch]), masks[i:i + batch].bool(), THRESHOLD)
    return Evaluation(acc.result(convention), acc.per_image_iou(), paths, acc.counts)


def evaluate_unet_detailed(unet: Segmenter, spec: str, split: str = "test", size: int | None = None,
                           convention: str = "dataset", batch: int = 64, input_size: int | None = None,
                           limit: int | None = None, progress: bool = False,
                           postprocess: str | None = None) -> Evaluation:
    """Evaluate F_theta on one split of a dataset spec at `size` (default 128); needs the split's masks.

    `postprocess` overrides the model's own mask cleaning (None: the model's)."""
    from .data import DataError, load_dataset  # lazy: evaluating predictions needs no data loaders

    data = load_dataset(spec, split, size or EVAL_SIZE, with_masks=True, limit=limit, progress=progress)
    if data.masks is None:
        raise DataError(f"{data.name} has no masks to evaluate against")
    was_training = unet.training
    unet.eval()
    try:
        return score_predictions(lambda x: predict_probs(unet, x, input_size, postprocess), data.images, data.masks,
                                 convention, batch, data.paths, progress)
    finally:
        unet.train(was_training)


def evaluate_inversion_detailed(generator: LayeredGenerator, spec: str, split: str = "test",
                                size: int | None = None, convention: str = "dataset", limit: int | None = None,
                                cfg: InversionConfig | None = None, discriminator: torch.nn.Module | None = None,
                                features: torch.nn.Module | None = None,
                                progress: bool = False) -> tuple[Evaluation, float]:
    """Segmentation by inversion under the same protocol: each test image is inverted into G (see
    elgan/invert.py) and G's own mask, upsampled to `size`, is the prediction. Returns the evaluation and
    the seconds per image (inversion is an optimisation per image, so its cost is part of the result)."""
    from .data import DataError, load_dataset
    from .invert import inversion_masks

    data = load_dataset(spec, split, size or EVAL_SIZE, with_masks=True, limit=limit, progress=progress)
    if data.masks is None:
        raise DataError(f"{data.name} has no masks to evaluate against")
    t0 = time.perf_counter()
    result = score_predictions(lambda x: inversion_masks(generator, x, cfg, discriminator, features),
                               data.images, data.masks, convention, 1, data.paths, progress)
    return result, (time.perf_counter() - t0) / data.images.shape[0]


# ---- photos of any size (the app and training/segment_folder.py) --------------------------------------

def fit_size(width: int, height: int, short_side: int, multiple: int) -> tuple[int, int]:
    """(w, h) with the shorter side at `short_side` and both sides multiples of `multiple` (>= it)."""
    scale = short_side / min(width, height)
    return tuple(max(multiple, int(round(v * scale / multiple)) * multiple)  # type: ignore[return-value]
                 for v in (width, height))


@torch.no_grad()
def segment_photo(unet: Segmenter, image: Image.Image, input_size: int | None = None,
                  threshold: float = THRESHOLD, postprocess: str | None = None) -> np.ndarray:
    """Foreground probability [H, W] float32 of a whole RGB photo at its own resolution.

    Unlike the benchmark protocol nothing is cropped: the photo keeps its aspect ratio at the model's
    scale (shorter side -> input_size, sides rounded to the U-Net's multiple), and the probability is
    upsampled to the photo's size, then cleaned at `threshold` by `postprocess` (None: the model's own).
    """
    size = input_size or unet.input_size or EVAL_SIZE
    w, h = image.size
    mw, mh = fit_size(w, h, size, unet.multiple)
    x = torch.from_numpy(np.asarray(image.convert("RGB").resize((mw, mh), Image.Resampling.BILINEAR)).copy())
    x = x.permute(2, 0, 1)[None].to(_device(unet)).float() / 127.5 - 1  # [1, 3, mh, mw]
    was_training = unet.training
    unet.eval()
    try:
        prob = torch.sigmoid(unet(x))  # [1, 1, mh, mw]
    finally:
        unet.train(was_training)
    prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
    prob = prob[0, 0].cpu().numpy().astype(np.float32)
    return clean_probability(prob, threshold, postprocess or unet.cfg.postprocess)


class FolderReport(NamedTuple):
    segmented: int  # photos segmented by this call
    skipped: int  # photos whose outputs already existed
    failed: list[tuple[str, str]]  # (path, reason) of unreadable photos


def segment_folder(unet: Segmenter, in_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   input_size: int | None = None, soft: bool = False, threshold: float = THRESHOLD,
                   progress: bool = False, postprocess: str | None = None) -> FolderReport:
    """Segment every photo under in_dir (recursively), one at a time so any folder size fits in memory.

    Writes out_dir/masks/<rel>.png (0/255 at `threshold`, or round(255 p) with `soft`) and
    out_dir/cutouts/<rel>.png (RGBA, alpha = round(255 p)). Files are written atomically, so a photo
    whose two outputs exist is done and is skipped: re-running finishes an interrupted job.
    """
    from .data import DataError, load_image
    from .data.base import index_by_stem, list_images, require_dir
    from .synthesis import save_png

    src, out = require_dir(Path(in_dir), "input folder"), Path(out_dir)
    photos = index_by_stem(list_images(src, exclude=[out]), src)  # equal stems would share an output
    segmented, skipped, failed = 0, 0, []
    for key, path in tqdm(photos.items(), desc="segment", unit="img", disable=not progress):
        mask_path, cut_path = out / "masks" / f"{key}.png", out / "cutouts" / f"{key}.png"
        if mask_path.exists() and cut_path.exists():
            skipped += 1
            continue
        try:
            image = load_image(path)
        except DataError as exc:
            failed.append((str(path), str(exc)))
            continue
        prob = segment_photo(unet, image, input_size, threshold, postprocess)  # [H, W] in [0, 1], cleaned
        alpha = np.round(prob * 255).astype(np.uint8)
        mask = alpha if soft else ((prob > threshold) * 255).astype(np.uint8)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        cut_path.parent.mkdir(parents=True, exist_ok=True)
        save_png(mask_path, mask)
        save_png(cut_path, np.dstack([np.asarray(image), alpha]))
        segmented += 1
    return FolderReport(segmented, skipped, failed)
