"""The segmentation network F_theta: shapes at every working resolution, and that it can learn at all."""

from __future__ import annotations

import pytest
import torch

from elgan.config import UNetConfig
from elgan.metrics import segmentation_scores
from elgan.nets.unet import UNet
from elgan.train.unet_trainer import segmentation_loss


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes(size: int) -> None:
    net = UNet(UNetConfig(base=4, depth=4))
    x = torch.rand(2, 3, size, size) * 2 - 1
    logits = net(x)
    assert logits.shape == (2, 1, size, size)
    assert torch.isfinite(logits).all()
    net.eval()
    p = net.predict(x)
    assert p.shape == (2, 1, size, size) and p.min() >= 0 and p.max() <= 1


def test_rejects_sizes_not_divisible() -> None:
    with pytest.raises(AssertionError, match="multiples of 16"):
        UNet(UNetConfig(base=4, depth=4))(torch.zeros(1, 3, 40, 40))


def test_gradients_reach_the_first_layer() -> None:
    net = UNet(UNetConfig(base=4, depth=3))
    segmentation_loss(net(torch.randn(2, 3, 32, 32)), torch.rand(2, 1, 32, 32)).backward()
    first = next(net.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def discs(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright discs (random centre and radius) on dark noise: images [n, 3, S, S], masks [n, 1, S, S]."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    c = torch.rand(n, 2, generator=g) * size * 0.5 + size * 0.25
    r = torch.rand(n, generator=g) * size * 0.15 + size * 0.15
    mask = ((xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2 < r[:, None, None] ** 2).float()
    noise = torch.rand(n, 3, size, size, generator=g) * 0.4
    images = torch.where(mask[:, None] > 0, 0.5 + noise, -0.9 + noise)
    return images, mask[:, None]


def iou_after_training_on_discs(net: torch.nn.Module, steps: int) -> float:
    """Adam lr 3e-3 on batches of 16 discs at 32², then the IoU on 64 new ones (seeded)."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        x, y = discs(16, 32, g)
        loss = segmentation_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = discs(64, 32, g)
    return segmentation_scores(net.predict(x), y).iou


def test_learns_a_trivial_task() -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(base=8, depth=3))
    assert iou_after_training_on_discs(net, 150) > 0.9  # IoU >= 0.99 for seeds 0-3 at this budget


# ---- the trainer -----------------------------------------------------------------------------------

def _tiny_cfg(**kw):
    from elgan.train.unet_trainer import UNetTrainConfig

    base = {"size": 32, "unet": UNetConfig(base=4, depth=3), "steps": 6, "batch": 4, "val_size": 8,
            "val_every": 3, "log_every": 2, "ckpt_every": 3, "lr_drop_step": 4}
    return UNetTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_generator():
    from elgan.config import GeneratorConfig
    from elgan.nets.generator import LayeredGenerator

    torch.manual_seed(0)
    return LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=20, group_size=10))


def test_config_validation() -> None:
    from elgan.config import ConfigError, from_dict, to_dict
    from elgan.train.unet_trainer import UNetTrainConfig, lr_at

    cfg = UNetTrainConfig()
    paper = (12000, 95, 1e-3, 8000, 0.2)
    assert (cfg.steps, cfg.batch, cfg.lr, cfg.lr_drop_step, cfg.lr_drop_factor) == paper
    assert lr_at(cfg, 7999) == 1e-3 and lr_at(cfg, 8000) == pytest.approx(2e-4)
    assert from_dict(UNetTrainConfig, to_dict(_tiny_cfg())) == _tiny_cfg()
    for bad in ({"source": "web"}, {"source": "folder:"}, {"size": 36}, {"val_fraction": 1.0},
                {"device": "tpu"}):
        with pytest.raises(ConfigError):
            _tiny_cfg(**bad)


def test_train_stream_writes_checkpoints_and_log(tiny_generator, tmp_path) -> None:
    import json

    from elgan.bundle import load_unet
    from elgan.train.unet_trainer import train_unet

    r = train_unet(_tiny_cfg(), tmp_path, tiny_generator, progress=False)
    assert r.finished and r.steps == 6 and r.best_val_iou is not None and r.imgs_per_s > 0
    for name in ("best.safetensors", "last.safetensors", "state.safetensors", "log.jsonl", "config.json"):
        assert (tmp_path / name).exists()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [2, 3, 4, 6]
    assert {"step", "loss", "lr", "imgs_per_s"} <= set(log[0]) and "val_iou" in log[1]
    assert log[-1]["lr"] == pytest.approx(2e-4)  # dropped from step 4 on
    unet = load_unet(r.best_checkpoint)
    assert unet.input_size == 32 and unet(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(FileExistsError):
        train_unet(_tiny_cfg(), tmp_path, tiny_generator, progress=False)


def test_resume_gives_the_uninterrupted_result(tiny_generator, tmp_path) -> None:
    from elgan.checkpoint import load_bundle
    from elgan.config import ConfigError
    from elgan.train.unet_trainer import train_unet

    straight = train_unet(_tiny_cfg(), tmp_path / "a", tiny_generator, progress=False)
    train_unet(_tiny_cfg(steps=3), tmp_path / "b", tiny_generator, progress=False)
    resumed = train_unet(_tiny_cfg(), tmp_path / "b", tiny_generator, resume=True, progress=False)
    assert resumed.steps == 6 and resumed.best_val_iou == straight.best_val_iou
    a = load_bundle(straight.last_checkpoint).tensors["unet"]
    b = load_bundle(resumed.last_checkpoint).tensors["unet"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    with pytest.raises(ConfigError, match="batch"):
        train_unet(_tiny_cfg(batch=5), tmp_path / "b", tiny_generator, resume=True, progress=False)
    with pytest.raises(FileNotFoundError):
        train_unet(_tiny_cfg(), tmp_path / "c", tiny_generator, resume=True, progress=False)


def test_train_from_written_pairs_and_real_masks(tiny_generator, tmp_path) -> None:
    from elgan.synthesis import write_synthetic_dataset
    from elgan.train.unet_trainer import train_unet
    from tests.test_evaluate import _cub_fixture

    write_synthetic_dataset(tiny_generator, tmp_path / "pairs", 10, shard_size=5)
    r = train_unet(_tiny_cfg(source=f"folder:{tmp_path / 'pairs'}", steps=2), tmp_path / "f", progress=False)
    assert r.finished and r.best_val_iou is not None
    cub = _cub_fixture(tmp_path / "cub", n=8)  # 4 train images with true masks
    r = train_unet(_tiny_cfg(source=f"real:cub:{cub}", steps=2), tmp_path / "r", progress=False)
    assert r.finished and r.best_val_iou is not None


def test_train_unet_cli(tiny_generator, tmp_path, capsys) -> None:
    import json

    from elgan.bundle import save_model_bundle
    from elgan.config import PerturbConfig
    from training.train_unet import main

    gan = tmp_path / "gan.safetensors"
    save_model_bundle(gan, tiny_generator, None, PerturbConfig())
    out = tmp_path / "unet"
    base = ["--out", str(out), "--base", "4", "--depth", "3", "--batch", "4", "--val-size", "8",
            "--no-progress"]
    assert main(["--gan", str(gan), "--steps", "4", "--dry-run", *base]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["size"] == 32 and cfg["lr_drop_step"] == 2 and cfg["source"] == "stream"  # size from G
    assert main(["--gan", str(gan), "--steps", "4", "--max-minutes", "0.00001", *base]) == 0
    assert "stopped by --max-minutes (continue with --resume)" in capsys.readouterr().out
    assert main(["--resume", "--max-minutes", "10", *base]) == 0
    assert "finished at step 4" in capsys.readouterr().out  # the saved config ran to its end
    assert main(["--resume", "--steps", "6", "--threads", "1", *base]) == 0  # extended: 2 more steps, the
    assert "finished at step 6" in capsys.readouterr().out  # saved schedule kept, placement as given
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 6 and saved["lr_drop_step"] == 2 and saved["threads"] == 1
    with pytest.raises(SystemExit):
        main(["--steps", "2", *base])  # stream without --gan
