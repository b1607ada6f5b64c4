"""F_theta with the frozen ImageNet EfficientNet-Lite0 encoder (UNetConfig.encoder = "lite0"): shapes,
that only its decoder trains and is saved, that it learns, and that it goes through training, bundles and
the photo path like the paper's U-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from elgan.config import ConfigError, UNetConfig
from elgan.nets.features import pretrained_lite0
from elgan.nets.unet import PretrainedUNet, UNet, build_unet
from elgan.train.unet_trainer import segmentation_loss
from tests.test_unet import iou_after_training_on_discs

LITE = UNetConfig(base=4, encoder="lite0")


def test_build_picks_the_encoder_and_checks_the_knobs() -> None:
    assert isinstance(build_unet(UNetConfig(base=4, depth=3)), UNet)
    assert isinstance(build_unet(LITE), PretrainedUNet)
    assert LITE.multiple == 16 and UNetConfig(encoder="lite0", encoder_scale=1).multiple == 32
    assert UNetConfig(depth=3).multiple == 8
    with pytest.raises(ConfigError, match="encoder"):
        UNetConfig(encoder="resnet")
    with pytest.raises(ConfigError, match="encoder_scale"):
        UNetConfig(encoder="lite0", encoder_scale=3)


@pytest.mark.parametrize("hw", [(32, 32), (64, 96)])
def test_shapes(hw: tuple[int, int]) -> None:
    net = build_unet(LITE).eval()
    x = torch.rand(2, 3, *hw) * 2 - 1
    p = net.predict(x)
    assert p.shape == (2, 1, *hw) and torch.isfinite(p).all() and p.min() >= 0 and p.max() <= 1
    with pytest.raises(AssertionError, match="multiples of 16"):
        net(torch.zeros(1, 3, 40, 40))


def test_only_the_decoder_is_trained_and_saved() -> None:
    net = build_unet(LITE)
    keys = list(net.state_dict())
    encoder = pretrained_lite0()
    assert keys and not any(k.startswith(("stem", "levels", "blocks", "conv_stem")) for k in keys)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in encoder.parameters())
    segmentation_loss(net(torch.randn(2, 3, 32, 32)), torch.rand(2, 1, 32, 32)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert all(p.grad is None for p in encoder.parameters())


def test_learns_a_trivial_task() -> None:
    torch.manual_seed(0)
    assert iou_after_training_on_discs(build_unet(UNetConfig(base=8, encoder="lite0")), 100) > 0.9


def test_trains_bundles_and_segments_a_photo(tmp_path) -> None:
    from elgan.bundle import load_unet
    from elgan.config import GeneratorConfig
    from elgan.evaluate import segment_photo
    from elgan.nets.generator import LayeredGenerator
    from elgan.train.unet_trainer import UNetTrainConfig, train_unet

    torch.manual_seed(0)
    gen = LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=20, group_size=10))
    cfg = UNetTrainConfig(size=32, unet=LITE, steps=3, batch=4, val_size=8, val_every=3, lr_drop_step=2)
    r = train_unet(cfg, tmp_path, gen, progress=False)
    assert r.finished and r.best_val_iou is not None
    unet = load_unet(r.best_checkpoint)
    assert isinstance(unet, PretrainedUNet) and unet.input_size == 32 and unet.cfg == LITE
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8))
    prob = segment_photo(unet, photo)
    assert prob.shape == (37, 50) and 0 <= prob.min() and prob.max() <= 1
    with pytest.raises(ConfigError, match="multiple of 16"):
        UNetTrainConfig(size=40, unet=LITE)


def test_cli_flags_reach_the_config(tmp_path, capsys) -> None:
    import json

    from elgan.bundle import save_model_bundle
    from elgan.config import GeneratorConfig, PerturbConfig
    from elgan.nets.generator import LayeredGenerator
    from training.train_unet import main

    gan = tmp_path / "gan.safetensors"
    save_model_bundle(gan, LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=20, group_size=10)),
                      None, PerturbConfig())
    assert main(["--out", str(tmp_path / "u"), "--gan", str(gan), "--encoder", "lite0", "--encoder-scale", "4",
                 "--dry-run"]) == 0
    unet = json.loads(capsys.readouterr().out)["unet"]
    assert unet["encoder"] == "lite0" and unet["encoder_scale"] == 4


def test_the_photo_presets_use_it_and_a_flag_turns_it_off() -> None:
    from elgan.pipeline import pipeline_config
    from training.pipeline import build_parser

    data = "folder:photos"
    assert pipeline_config("horse", data).unet.unet.encoder == "lite0"
    assert pipeline_config("horse128", data).unet.unet.encoder == "lite0"
    assert pipeline_config("cpu").unet.unet.encoder == "scratch"  # the embedded data: the paper's U-Net
    assert pipeline_config("horse", data, unet_encoder="scratch").unet.unet.encoder == "scratch"
    args = build_parser().parse_args(["--preset", "horse", "--data", data, "--unet-encoder", "scratch"])
    assert args.unet_encoder == "scratch"
