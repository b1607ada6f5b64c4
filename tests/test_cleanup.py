"""Cleaning a one-object mask: the largest region with its holes filled, the same in every consumer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from elgan.bundle import assemble_bundle, load_model_bundle, load_unet, save_model_bundle
from elgan.checkpoint import save_bundle
from elgan.cleanup import POSTPROCESS, clean_batch, clean_probability, largest_filled
from elgan.config import ConfigError, GeneratorConfig, PerturbConfig, UNetConfig
from elgan.evaluate import predict_probs, score_predictions, segment_photo
from elgan.nets.generator import LayeredGenerator
from elgan.nets.unet import UNet


def _scene(size: int = 32) -> np.ndarray:
    """bool [S, S]: a 12x12 square with a 4x4 hole, a 2x2 blob apart from it, and a bay open to the top."""
    fg = np.zeros((size, size), bool)
    fg[8:20, 8:20] = True
    fg[12:16, 12:16] = False  # a hole: background enclosed by the object
    fg[8:14, 17] = False  # a bay: cut into the object from its top edge, open to the outside
    fg[26:28, 26:28] = True  # a false-foreground blob
    return fg


def test_largest_region_is_kept_and_its_holes_filled() -> None:
    fg = _scene()
    out = largest_filled(fg)
    assert out[12:16, 12:16].all()  # the hole is filled
    assert not out[26:28, 26:28].any()  # the blob is dropped
    assert not out[8:14, 17].any()  # the bay is background that reaches the border: not a hole
    assert out.sum() == 12 * 12 - 6
    assert not largest_filled(np.zeros((5, 5), bool)).any()
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        largest_filled(np.zeros((1, 5, 5), bool))


def test_regions_are_8_connected_and_holes_4_connected() -> None:
    fg = np.zeros((9, 9), bool)
    fg[1, 1] = fg[2, 2] = fg[3, 3] = True  # one diagonal region of 3 pixels
    fg[6:8, 6:8] = True  # a 2x2 region of 4: the larger, so the diagonal goes
    assert largest_filled(fg).sum() == 4
    fg = np.zeros((9, 9), bool)
    fg[1:8, 1:8] = True
    fg[2:7, 2:7] = False  # a ring around a 5x5 hole ...
    fg[1, 1] = False  # ... whose corner gap touches the hole only diagonally: still a hole
    assert largest_filled(fg)[4, 4]
    fg[1, 4] = False  # a gap in the ring's side: the inside is now open to the border
    assert not largest_filled(fg)[4, 4]


def test_cleaning_the_probability_equals_cleaning_the_mask() -> None:
    rng = np.random.default_rng(0)
    fg = _scene()
    prob = np.where(fg, rng.uniform(0.55, 1.0, fg.shape), rng.uniform(0.0, 0.45, fg.shape)).astype(np.float32)
    cleaned = clean_probability(prob, 0.5, "largest_filled")
    assert np.array_equal(cleaned > 0.5, largest_filled(fg))
    kept = largest_filled(fg) == fg
    assert np.array_equal(cleaned[kept], prob[kept])  # untouched pixels keep their probability (soft edges)
    assert prob is clean_probability(prob, 0.5, "none")
    with pytest.raises(ValueError, match="postprocess"):
        clean_probability(prob, 0.5, "holes")
    batch = torch.from_numpy(np.stack([prob, prob]))[:, None]  # [2, 1, S, S]
    out = clean_batch(batch, 0.5, "largest_filled")
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert torch.equal(out[1, 0], torch.from_numpy(cleaned))


def test_the_knob_is_checked_and_lists_the_cleanings() -> None:
    assert POSTPROCESS == ("none", "largest_filled") and UNetConfig().postprocess == "none"
    with pytest.raises(ConfigError, match="postprocess"):
        UNetConfig(postprocess="fill")


class Scene(nn.Module):
    """A stand-in U-Net whose logits draw `_scene` at the input's size (records nothing else)."""

    multiple = 16

    def __init__(self, postprocess: str) -> None:
        super().__init__()
        self.cfg = UNetConfig(postprocess=postprocess)
        self.input_size = 32
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = torch.from_numpy(_scene(32))[None, None].float()
        fg = nn.functional.interpolate(fg, size=x.shape[-2:], mode="nearest")
        return (fg * 12 - 6).expand(x.shape[0], 1, -1, -1) + self.dummy


def test_protocol_and_photos_clean_as_the_model_says() -> None:
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    truth = torch.from_numpy(largest_filled(_scene()))[None, None].expand(2, 1, -1, -1).to(torch.uint8)
    raw, clean = Scene("none"), Scene("largest_filled")
    assert score_predictions(lambda x: predict_probs(clean, x), images, truth).scores.iou == 1.0  # type: ignore
    raw_iou = score_predictions(lambda x: predict_probs(raw, x), images, truth).scores.iou  # type: ignore
    assert raw_iou < 0.99
    # an override beats the model's own setting, both ways
    assert torch.equal(predict_probs(raw, images, postprocess="largest_filled") > 0.5,  # type: ignore[arg-type]
                       truth.bool())
    assert torch.equal(predict_probs(clean, images, postprocess="none"), predict_probs(raw, images))  # type: ignore
    photo = Image.new("RGB", (64, 64))
    assert np.array_equal(segment_photo(clean, photo) > 0.5,  # type: ignore[arg-type]
                          np.kron(largest_filled(_scene()), np.ones((2, 2), bool)))
    assert (segment_photo(raw, photo) > 0.5)[52:56, 52:56].all()  # the raw mask keeps the blob


def test_bundle_stores_the_cleaning_and_evaluate_can_override_it(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from training.evaluate import main as evaluate_main

    torch.manual_seed(0)
    g = LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=20, group_size=10))
    unet = UNet(UNetConfig(base=4, depth=3), input_size=32)
    gan_path, unet_path = tmp_path / "gan.safetensors", tmp_path / "unet.safetensors"
    save_model_bundle(gan_path, g, None, PerturbConfig(rotate=False), None, None, {})
    save_bundle(unet_path, {"unet": unet}, {"unet": unet.cfg}, {"unet_size": 32})
    out = tmp_path / "model.safetensors"
    assemble_bundle(gan_path, unet_path, out, postprocess="largest_filled")
    assert load_model_bundle(out).unet.cfg.postprocess == "largest_filled"
    assert load_unet(out).cfg.postprocess == "largest_filled"
    assemble_bundle(out, out, tmp_path / "kept.safetensors")  # None keeps the U-Net file's own setting
    assert load_unet(tmp_path / "kept.safetensors").cfg.postprocess == "largest_filled"
    with pytest.raises(ConfigError):
        assemble_bundle(gan_path, unet_path, tmp_path / "bad.safetensors", postprocess="fill")
    assert not (tmp_path / "bad.safetensors").exists()

    args = ["--unet", str(out), "--size", "32", "--limit", "4", "--json"]
    assert evaluate_main(args) == 0
    assert "mask cleaning largest_filled" in capsys.readouterr().out
    assert evaluate_main([*args, "--postprocess", "none"]) == 0
    assert "mask cleaning none" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate_main([*args, "--postprocess", "fill"])


def test_folder_tool_cleans_as_the_model_says(tmp_path: Path) -> None:
    from elgan.evaluate import segment_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32)).save(photos / "a.png")
    net = Scene("largest_filled")
    segment_folder(net, photos, tmp_path / "clean")  # type: ignore[arg-type]
    segment_folder(net, photos, tmp_path / "raw", postprocess="none")  # type: ignore[arg-type]
    clean = np.asarray(Image.open(tmp_path / "clean" / "masks" / "a.png")) > 0
    raw = np.asarray(Image.open(tmp_path / "raw" / "masks" / "a.png")) > 0
    assert np.array_equal(clean, largest_filled(_scene())) and np.array_equal(raw, _scene())
    alpha = np.asarray(Image.open(tmp_path / "clean" / "cutouts" / "a.png"))[..., 3]
    assert alpha[12:16, 12:16].min() == 255 and alpha[26:28, 26:28].max() == 0  # the cut-out agrees


def test_the_training_programs_set_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from elgan.pipeline import pipeline_config
    from training.pipeline import main as pipeline_main
    from training.train_unet import main as unet_main

    assert pipeline_config("cpu").unet.unet.postprocess == "none"
    assert pipeline_config("cpu", unet_postprocess="largest_filled").unet.unet.postprocess == "largest_filled"
    assert pipeline_main(["--preset", "tiny", "--out", str(tmp_path / "p"), "--unet-postprocess", "largest_filled",
                          "--dry-run"]) == 0
    assert '"postprocess": "largest_filled"' in capsys.readouterr().out
    assert unet_main(["--out", str(tmp_path / "u"), "--source", "folder:x", "--postprocess", "largest_filled",
                      "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["unet"]["postprocess"] == "largest_filled"
