"""Inversion: the soft generator path, the search's mechanics, recovery of known codes, the CLIs, the app tab.

Tiny untrained generators (32 px): mechanics do not need a trained model, and recovery is tested on
images the generator itself drew from known (z, c), where the right answer exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from elgan.bundle import load_model_bundle
from elgan.config import GeneratorConfig
from elgan.invert import InversionConfig, inversion_masks, invert, per_sample_perceptual, random_feature_net
from elgan.losses import perceptual_distance
from elgan.nets.generator import LayeredGenerator
from studio import invert as photo
from studio.registry import StudioError
from tests._server import connect, launch
from tests.test_studio import write_tiny_bundle

FAST = InversionConfig(top_k=2, candidates=4, restarts=2, steps=6, refine_steps=3)


def tiny_generator(width: int = 4, **kw: int) -> LayeredGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LayeredGenerator(GeneratorConfig(size=32, width=width, **kw)).eval()


def test_forward_soft_is_forward_on_one_hots() -> None:
    g = tiny_generator()
    z, c = g.sample_codes(3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        hard = g(z, c)
        soft = g.forward_soft(z, F.one_hot(c, g.cfg.n_categories).float())
        mixed = g.forward_soft(z, torch.full((3, g.cfg.n_categories), 1 / g.cfg.n_categories))
    for a, b in zip(hard, soft, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert (mixed.foreground - hard.foreground).abs().max() > 1e-3  # a soft c is a different picture
    torch.testing.assert_close(mixed.background, hard.background)  # ... with the same background (z only)


def test_per_sample_perceptual_agrees_with_the_loss() -> None:
    net = random_feature_net(0)
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    fx, fy = net.pyramid(x), net.pyramid(y)
    per = per_sample_perceptual(fx, fy)
    assert per.shape == (3,)
    torch.testing.assert_close(per.mean(), perceptual_distance(fx, fy))
    torch.testing.assert_close(per[1], perceptual_distance([f[1:2] for f in fx], [f[1:2] for f in fy]))


def test_mechanics_progress_and_determinism() -> None:
    g = tiny_generator()
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    calls: list[tuple[int, int, float]] = []
    r = invert(g, target, FAST, progress=lambda s, t, loss: calls.append((s, t, loss)))
    assert r.z.shape == (1, g.cfg.z_dim) and 0 <= r.c < g.cfg.n_categories and r.c_sup == r.c // g.cfg.group_size
    assert r.reconstruction.shape == (1, 3, 32, 32) and r.layers.mask.shape == (1, 1, 32, 32)
    assert {"loss", "perceptual", "pixel_mae", "pixel_mse", "explained", "z_norm2"} <= set(r.distances)
    assert calls and calls[-1][1] == FAST.steps + FAST.refine_steps and all(np.isfinite(c[2]) for c in calls)
    assert len(r.codes()["z"]) == g.cfg.z_dim and not g.training
    assert r.steps == r.search_steps + r.refine_steps and r.search_steps <= FAST.steps
    assert r.refine_steps <= FAST.refine_steps
    assert f"{r.search_steps} search + {r.refine_steps} refinement steps" in photo.describe(r, g.cfg.group_size)
    shown: list[str] = []
    on_step = photo.gradio_progress(lambda fraction, desc: shown.append(desc), FAST.steps)
    for step, total, loss in calls:
        on_step(step, total, loss)
    assert shown[0].startswith(f"inverting: search step 1/{FAST.steps}")
    assert r.refine_steps == 0 or f"refinement step {r.refine_steps}/{FAST.refine_steps}" in shown[-1], shown
    torch.testing.assert_close(g(r.z, torch.tensor([r.c])).image, r.reconstruction)  # an honest G(z, c)
    again = invert(g, target, FAST)
    assert torch.equal(again.z, r.z) and again.c == r.c  # same seed, same codes
    assert not torch.equal(invert(g, target, replace(FAST, seed=1)).z, r.z)
    pixel_only = invert(g, target, replace(FAST, w_perceptual=0.0))
    assert np.isfinite(pixel_only.distances["loss"])
    with pytest.raises(ValueError, match="target must be"):
        invert(g, torch.zeros(1, 3, 64, 64), FAST)
    with pytest.raises(ValueError):
        InversionConfig(restarts=0)


def test_start_categories_come_from_the_recovery_head() -> None:
    class Disc(nn.Module):
        def forward(self, x: torch.Tensor):  # noqa: ANN202 -- mimics DiscriminatorOutput
            from elgan.nets.discriminator import DiscriminatorOutput
            logits = torch.zeros(x.shape[0], 200)
            logits[:, 7], logits[:, 3] = 5.0, 4.0
            return DiscriminatorOutput(torch.zeros(x.shape[0]), logits)

    g = tiny_generator()
    r = invert(g, torch.zeros(1, 3, 32, 32), FAST, discriminator=Disc())
    assert r.start_categories == [7, 3]
    assert invert(g, torch.zeros(1, 3, 32, 32), FAST).start_categories != [7, 3]  # random without D


def test_recovers_known_codes() -> None:
    """Images G drew from known (z, c) come back close, with the right c.

    Setting: a width-8 generator with 20 categories, where c is identifiable even untrained (each
    category's embedding is a unit-scale vector); the true c is one of three start categories, in a
    different position each time, so the search must *choose* it -- the argmax snap and the choice of
    restart both have to be right. Thresholds: mean pixel error < 0.03 (3% of the range) for every
    image, the right c for at least 4 of 5 (measured: 5 of 5; a search that ignored c would get ~1/3).
    """
    g = tiny_generator(width=8, n_categories=20, group_size=5)
    z, c = g.sample_codes(5, torch.Generator().manual_seed(7))
    with torch.no_grad():
        images = g(z, c).image
    cfg = InversionConfig(candidates=8, restarts=3, steps=30, refine_steps=10)
    right = 0
    for i in range(5):
        truth = int(c[i])
        cats = [truth, (truth + 7) % 20, (truth + 13) % 20]
        cats = cats[i % 3:] + cats[:i % 3]
        r = invert(g, images[i:i + 1], cfg, categories=cats)
        assert r.distances["pixel_mae"] < 0.03, (i, r.distances)
        right += r.c == truth
    assert right >= 4


def test_segmentation_by_inversion_shapes() -> None:
    g = tiny_generator()
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    prob = inversion_masks(g, images, FAST)
    assert prob.shape == (2, 1, 48, 48) and 0 <= float(prob.min()) and float(prob.max()) <= 1


def test_evaluate_cli_inversion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.evaluate import main

    bundle = write_tiny_bundle(tmp_path / "b.safetensors", with_unet=False)
    assert main(["--bundle", str(bundle), "--method", "inversion", "--data", "synthetic", "--limit", "2",
                 "--size", "64", "--steps", "2", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["n"] == 2 and set(scores) == {"acc", "iou", "miou", "n"}
    assert all(0.0 <= scores[k] <= 1.0 for k in ("acc", "iou", "miou"))
    assert main(["--bundle", str(bundle), "--data", "synthetic", "--limit", "1"]) == 2  # unet: it has none


def test_invert_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.invert import main

    bundle = write_tiny_bundle(tmp_path / "b.safetensors", with_unet=False)
    photo_path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photo_path)
    out = tmp_path / "out"
    assert main(["--bundle", str(bundle), "--image", str(photo_path), "--out", str(out), "--steps", "3",
                 "--edit", "tx=1,rotation=0.5"]) == 0
    strip = np.asarray(Image.open(out / "photo.png"))
    assert strip.shape[0] > 64 and strip.shape[1] > 7 * 64
    report = json.loads((out / "photo.json").read_text())
    assert len(report["z"]) == 100 and report["c_sup"] == report["c"] // 10 and "pixel_mae" in report["distances"]
    assert len(report["panels"]) == 7 and report["edit"]["eps"] == {"tx": 1.0, "rotation": 0.5}
    assert report["edit"]["walk_vs_moved_mae"] >= 0
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert main(["--bundle", str(bundle), "--image", str(tmp_path / "junk.png"), "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err


def test_studio_codes_and_edits(tmp_path: Path) -> None:
    model = load_model_bundle(write_tiny_bundle(tmp_path / "b.safetensors", with_unet=False))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 30, 3), dtype=np.uint8))
    original, r = photo.invert_photo(model, image, steps=3)
    assert original.shape == (32, 32, 3)
    state = photo.codes_state("key", r)
    z, c = photo.state_codes(model, "key", json.loads(json.dumps(state)))  # survives a JSON round trip
    assert c == r.c and torch.equal(z, r.z)
    torch.testing.assert_close(photo.edit(model, z, c, {}).image, r.reconstruction)  # no edit: the reconstruction
    assert not torch.equal(photo.edit(model, z, c, {"tx": 1.0}).image, r.reconstruction)
    torch.testing.assert_close(photo.move_layers(model, z, c, {}), r.reconstruction)  # T_0^X is the identity
    moved = photo.move_layers(model, z, c, {"tx": 1.0})
    assert not torch.equal(moved, r.reconstruction)
    assert "Φ walk vs moved layers" in photo.edit_caption(model, state, c, {"tx": 1.0}, r.reconstruction, moved)
    for bad, match in [(None, "no inverted photo"), ({**state, "model": "other"}, "another model"),
                       ({**state, "z": state["z"][:-1]}, "finite"), ({**state, "z": [float("nan")] * 100}, "finite"),
                       ({**state, "c": 10_000}, "c must be")]:
        with pytest.raises(StudioError, match=match):
            photo.state_codes(model, "key", bad)
    with pytest.raises(StudioError, match="steps"):
        photo.invert_photo(model, image, steps=10_000)
    views = photo.result_views(original, r)
    assert {"original", "reconstruction", "background", "foreground", "mask"} <= set(views)
    poor = replace(r, distances={**r.distances, "pixel_mae": 0.2, "explained": 0.1})
    good = replace(r, distances={**r.distances, "pixel_mae": 0.2, "explained": 0.9})  # vivid: big error, right
    exact = replace(r, distances={**r.distances, "pixel_mae": 0.01, "explained": -1.0})  # flat photo, matched
    assert "Poor reconstruction" in photo.describe(poor, 10) and "10%" in photo.describe(poor, 10)
    assert not any(photo.is_poor(x) for x in (good, exact)) and "Poor" not in photo.describe(good, 10)


# ---- the app's "Your photo" tab through gradio_client (launch pattern of tests/test_app.py) ---------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("gradio_client")
    import app
    from studio.registry import ModelRegistry

    root = tmp_path_factory.mktemp("photo-app")
    write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    demo = app.build_demo(ModelRegistry(root / "checkpoints", root / "runs"), root / "runs", None,
                          allow_training=False)
    url = launch(demo)  # returns once the server answers (a busy machine may take long)
    try:
        yield url
    finally:
        demo.close()
        torch.set_num_threads(before)


def test_app_photo_tab(served: str, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = connect(served)
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/invert_photo", "/edit_photo", "/photo_c_to_csup", "/photo_csup_to_c"} <= names
    *_, text = client.predict(0, 0, 0, 0, 3, api_name="/edit_photo")  # nothing inverted in this session yet
    assert "Invert a photo first" in text
    picture = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 4), dtype=np.uint8), "RGBA").save(picture)
    out = client.predict(handle_file(str(picture)), 10, 0, api_name="/invert_photo")
    original, recon, bg, fg, mask, caption, *sliders = out
    assert all(np.asarray(Image.open(p)).shape[:2] == (256, 256) for p in (original, recon, bg, fg, mask))
    assert "of the photo's variation" in caption and "Untrained" not in caption
    search, refine = map(int, re.search(r"(\d+) search \+ (\d+) refinement steps", caption).groups())
    assert search <= 10 and refine <= InversionConfig().refine_steps  # the slider's 10 are the search steps
    edited, moved, edit_text = client.predict(1.0, 0, 0, 0, 5, api_name="/edit_photo")
    assert np.asarray(Image.open(edited)).shape == np.asarray(Image.open(moved)).shape == (256, 256, 3)
    assert "ε tx +1.00" in edit_text and "Φ walk vs moved layers" in edit_text
    assert client.predict(37, api_name="/photo_c_to_csup") == 3
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(AppError, match="not a readable image"):
        client.predict(handle_file(str(junk)), 10, 0, api_name="/invert_photo")
