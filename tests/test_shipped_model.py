"""The committed default bundle works: it loads, its generator's masks are clean, its U-Net segments.

A wrong, truncated or mismatched file in checkpoints/ is what a fresh clone would open in the app, so
the suite measures it (on 200 of the embedded test images, which the project generates itself) rather
than only checking that it loads. The full-split numbers are in checkpoints/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elgan.bundle import load_model_bundle
from elgan.evaluate import evaluate_unet_detailed
from elgan.gan_loss import mask_statistics

DEFAULT = Path(__file__).resolve().parent.parent / "checkpoints" / "default.safetensors"
HORSE = DEFAULT.parent / "horse.safetensors"


def _shipped(path: Path):
    if not path.is_file():
        pytest.skip(f"no checkpoints/{path.name} in this checkout")
    return load_model_bundle(path)


@pytest.fixture(scope="module")
def bundle():
    return _shipped(DEFAULT)


def test_default_generator_draws_clean_masks_of_object_size(bundle) -> None:
    g = bundle.generator
    with torch.inference_mode():
        masks = g(*g.sample_codes(64, torch.Generator().manual_seed(0))).mask  # [64, 1, S, S]
    stats = mask_statistics(masks)
    area, binary = stats["mask_area"], stats["mask_binary_frac"]
    assert 0.15 < area < 0.5, area  # the data's objects cover 0.25 of the image on average
    assert binary > 0.9, binary


def test_default_unet_segments_the_embedded_test_split(bundle) -> None:
    assert bundle.unet is not None
    stored = bundle.metadata["metrics"]
    assert stored["split"] == "test" and stored["n"] == 1000
    scores = evaluate_unet_detailed(bundle.unet, "synthetic", "test", limit=200).scores
    assert scores.n == 200
    assert scores.iou > 0.8 and scores.acc > 0.93, scores  # the full split: see checkpoints/README.md
    assert abs(scores.iou - stored["iou"]) < 0.05  # the numbers the app shows describe this U-Net


def test_shipped_bundles_warn_about_uploads_unlike_their_training_images(bundle) -> None:
    """The statistics written by training.domain_stats (docs/domain_check.md): the app's synthetic examples
    pass the default model's check, and the horse model flags them."""
    from PIL import Image

    from elgan.data.synthetic import render_synthetic
    from elgan.domain import image_distance

    scenes = [Image.fromarray(render_synthetic("test", i, 128)[0]) for i in range(3)]
    assert bundle.domain is not None and bundle.metadata["domain"]["threshold"] == pytest.approx(
        bundle.domain.threshold)
    assert all(not bundle.domain.is_unlike(image_distance(bundle.domain, s)) for s in scenes)
    assert "synthetic scenes" in bundle.metadata["about"]["trained_on"]
    if HORSE.is_file():
        stats = load_model_bundle(HORSE).domain
        assert stats is not None and all(stats.is_unlike(image_distance(stats, s)) for s in scenes)


@pytest.fixture(scope="module")
def horse():
    return _shipped(HORSE)


def test_horse_generator_separates_the_object_and_its_unet_follows(horse) -> None:
    """The shipped horse model's generator draws near-binary masks over part of the picture (not the
    all-foreground solution its earlier runs fell into), and its U-Net finds those masks again on the
    generated pictures. Its score on real photos is in checkpoints/README.md (the photos are not here)."""
    from elgan.evaluate import predict_probs
    from elgan.metrics import segmentation_scores

    g = horse.generator
    with torch.inference_mode():
        layers = g(*g.sample_codes(64, torch.Generator().manual_seed(0)))
        pictures = ((layers.image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # as a photo arrives
        probs = predict_probs(horse.unet, pictures)
    stats = mask_statistics(layers.mask)
    assert 0.25 < stats["mask_area"] < 0.6, stats  # its ceilings held the batch mean at 0.35-0.5
    assert stats["mask_binary_frac"] > 0.8, stats
    scores = segmentation_scores(probs, layers.mask)
    assert scores.iou > 0.85, scores
    assert horse.metadata["metrics"]["n"] == 250 and horse.metadata["metrics"]["iou"] > 0.5


def test_horse_walk_moves_the_horse(horse) -> None:
    """The horse model's direction sliders move the horse: the walk does at least half the true move in
    each direction on the measurement's 12 seeds (the model card's numbers: ratios 0.33-0.43)."""
    from elgan.equivariance import measure_equivariance, meets_target

    assert horse.phi is not None
    with torch.inference_mode():
        result = measure_equivariance(horse.generator, horse.phi, horse.perturb)
    assert meets_target(result), result
    assert all(v["move_share"] > 0.7 for v in result.values()), result  # the mask travels with the walk
