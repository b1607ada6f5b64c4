"""Augmented U-Net pairs: one geometry for a picture and its mask, colour on the picture alone."""

from __future__ import annotations

import pytest
import torch

from elgan.data.augment import augment_pairs


def _pairs(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks with an off-centre square; pictures whose three channels are 2 * mask - 1 (grey = mask)."""
    m = torch.zeros(n, 1, size, size)
    for i in range(n):
        m[i, :, 4 + i % 8:16 + i % 8, 2:14] = 1
    return m.expand(-1, 3, -1, -1) * 2 - 1, m


def test_picture_and_mask_move_together_and_stay_in_range() -> None:
    x, m = _pairs()
    ax, am = augment_pairs(x, m, torch.Generator().manual_seed(0))
    assert ax.shape == x.shape and am.shape == m.shape
    assert ax.min() >= -1 and ax.max() <= 1 and am.min() >= 0 and am.max() <= 1
    assert not torch.allclose(am, m)  # the geometry changed ...
    for i in range(x.shape[0]):  # ... identically for the picture: object pixels stay above background ones
        inside, outside = ax[i, 0][am[i, 0] > 0.9], ax[i, 0][am[i, 0] < 0.1]
        if len(inside) and len(outside):
            assert inside.min() >= outside.max() - 1e-6
    flipped = sum(bool(am[i, 0, :, 16:].sum() > am[i, 0, :, :16].sum()) for i in range(x.shape[0]))
    assert 0 < flipped < x.shape[0]  # the square started on the left: about half the pairs were flipped
    colour = ax[:, 0][am[:, 0] < 0.1]
    assert colour.std() > 0.05  # the background's grey differs between pictures: the colours were jittered


def test_seeded_and_refuses_pairs_that_do_not_match() -> None:
    x, m = _pairs(4)
    a = augment_pairs(x, m, torch.Generator().manual_seed(3))
    b = augment_pairs(x, m, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="pair up"):
        augment_pairs(x, m[:3])
    with pytest.raises(ValueError, match="pair up"):
        augment_pairs(x, m[..., :16])


def test_the_trainer_augments_when_told(tmp_path) -> None:
    from elgan.config import GeneratorConfig, UNetConfig
    from elgan.nets.generator import LayeredGenerator
    from elgan.train.unet_trainer import UNetTrainConfig, train_unet
    from training.train_unet import main

    torch.manual_seed(0)
    g = LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=20, group_size=10))
    cfg = {"size": 32, "unet": UNetConfig(base=4, depth=3), "steps": 3, "batch": 4, "val_size": 8,
           "val_every": 3, "log_every": 1, "ckpt_every": 3}
    plain = train_unet(UNetTrainConfig(**cfg), tmp_path / "plain", g, progress=False)
    aug = train_unet(UNetTrainConfig(**cfg, augment="photo"), tmp_path / "aug", g, progress=False)
    assert plain.finished and aug.finished
    loss = [(tmp_path / r / "log.jsonl").read_text().splitlines()[0] for r in ("plain", "aug")]
    assert loss[0] != loss[1]  # the same pairs, seen differently
    assert '"augment": "photo"' in (tmp_path / "aug" / "config.json").read_text()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--source", "folder:x", "--augment", "heavy"])


def test_the_pipeline_passes_it_on() -> None:
    from elgan.pipeline import pipeline_config
    from training.pipeline import build_parser

    assert pipeline_config("cpu").unet.augment == "none"  # the embedded data: the paper's recipe
    assert pipeline_config("horse", "folder:photos").unet.augment == "photo"  # photos: augmented pairs
    assert pipeline_config("horse128", "folder:photos").unet.augment == "photo"
    assert pipeline_config("cpu", unet_augment="photo").unet.augment == "photo"
    assert build_parser().parse_args(["--preset", "tiny", "--unet-augment", "photo"]).unet_augment == "photo"
