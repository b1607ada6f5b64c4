"""The app-facing model bundle: what it holds, a lossless round trip, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elgan.bundle import assemble_bundle, load_model_bundle, load_unet, save_model_bundle
from elgan.checkpoint import CheckpointError, load_bundle, save_bundle
from elgan.config import DiscriminatorConfig, GeneratorConfig, PerturbConfig, PhiConfig, UNetConfig
from elgan.nets.discriminator import Discriminator
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform
from elgan.nets.unet import UNet

GEN = GeneratorConfig(size=32, width=4, n_categories=20, group_size=10)
PERTURB = PerturbConfig(rotate=False)


def _nets() -> tuple[LayeredGenerator, LatentTransform, UNet, Discriminator]:
    torch.manual_seed(0)
    return (LayeredGenerator(GEN), LatentTransform(PhiConfig(eps_dim=PERTURB.eps_dim)),
            UNet(UNetConfig(base=4, depth=3), input_size=32),
            Discriminator(DiscriminatorConfig(size=32, width=4, n_categories=20, n_super=2)))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip(tmp_path: Path) -> None:
    g, phi, unet, d = _nets()
    path = tmp_path / "bundle.safetensors"
    save_model_bundle(path, g, phi, PERTURB, unet, d, metadata={"preset": "tiny", "metrics": {"iou": 0.5}})
    raw = load_bundle(path)
    assert set(raw.tensors) == {"generator", "phi", "unet", "discriminator"}
    assert {"generator", "phi", "perturb", "unet", "discriminator"} <= set(raw.configs)

    b = load_model_bundle(path)
    assert _same(b.generator, g) and _same(b.phi, phi) and _same(b.unet, unet) and _same(b.discriminator, d)
    assert b.perturb == PERTURB and b.generator.cfg == GEN and b.size == 32
    assert b.metadata["preset"] == "tiny" and b.metadata["metrics"] == {"iou": 0.5}
    assert b.unet_size == 32 and b.unet.input_size == 32 and b.path == str(path)
    assert not b.generator.training and not b.unet.training  # ready to sample
    g.eval()
    z, c = g.sample_codes(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        # the loaded generator runs channels_last (elgan/bundle.py): the same image up to float rounding
        assert torch.allclose(b.generator(z, c).image, g(z, c).image, atol=1e-5)


def test_optional_networks_and_half(tmp_path: Path) -> None:
    g, _, unet, _ = _nets()
    path = tmp_path / "g.safetensors"
    save_model_bundle(path, g, None, PerturbConfig(), half=True)
    b = load_model_bundle(path)
    assert b.phi is None and b.unet is None and b.discriminator is None and b.unet_size is None
    assert next(b.generator.parameters()).dtype == torch.float32  # fp16 on disk, fp32 in memory
    save_model_bundle(path, g, None, PerturbConfig(), unet, unet_size=64)
    assert load_unet(path).input_size == 64


def test_refuses_a_file_without_generator(tmp_path: Path) -> None:
    _, _, unet, _ = _nets()
    path = tmp_path / "unet_only.safetensors"
    save_bundle(path, {"unet": unet}, {"unet": unet.cfg})
    with pytest.raises(CheckpointError, match="no generator"):
        load_model_bundle(path)
    assert load_unet(path).cfg == unet.cfg  # its U-Net alone still loads
    with pytest.raises(CheckpointError, match="missing network"):
        load_unet(_write_generator_only(tmp_path))


def _write_generator_only(tmp_path: Path) -> Path:
    path = tmp_path / "gen_only.safetensors"
    g, *_ = _nets()
    save_model_bundle(path, g, None, PerturbConfig())
    return path


def test_refuses_wrong_shapes_with_a_clear_message(tmp_path: Path) -> None:
    g, *_ = _nets()
    path = tmp_path / "lying.safetensors"
    wider = GeneratorConfig(size=32, width=8, n_categories=20, group_size=10)  # config says 8, weights are 4
    save_bundle(path, {"generator": g}, {"generator": wider})
    with pytest.raises(CheckpointError, match="generator.*wrong shapes"):
        load_model_bundle(path)


def test_refuses_missing_or_invalid_configs(tmp_path: Path) -> None:
    g, *_ = _nets()
    path = tmp_path / "noconfig.safetensors"
    save_bundle(path, {"generator": g})
    with pytest.raises(CheckpointError, match="no config for 'generator'"):
        load_model_bundle(path)
    save_bundle(path, {"generator": g}, {"generator": {"size": 33}})
    with pytest.raises(CheckpointError, match="invalid"):
        load_model_bundle(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model_bundle(tmp_path / "absent.safetensors")


def test_assemble_puts_a_later_unet_beside_the_gan_and_drops_stale_scores(tmp_path: Path) -> None:
    g, phi, old_unet, d = _nets()
    gan_path = tmp_path / "gan.safetensors"
    save_model_bundle(gan_path, g, phi, PERTURB, old_unet, d, {"preset": "tiny", "metrics": {"iou": 0.99},
                                                               "unet": {"steps": 3}, "wall_s": {"gan": 5, "unet": 2}})
    torch.manual_seed(1)
    new_unet = UNet(UNetConfig(base=4, depth=3), input_size=32)
    with torch.no_grad():
        next(new_unet.parameters()).add_(1e-4)  # a value fp16 cannot hold exactly
    unet_path = tmp_path / "unet.safetensors"
    save_bundle(unet_path, {"unet": new_unet}, {"unet": new_unet.cfg}, {"step": 7, "val_iou": 0.5, "unet_size": 32})

    seen: dict[str, torch.Tensor] = {}

    def score(unet: UNet) -> dict[str, float]:
        seen.update({k: v.clone() for k, v in unet.state_dict().items()})
        return {"iou": 0.25}

    out = tmp_path / "out.safetensors"
    assert assemble_bundle(gan_path, unet_path, out, score, half=True) == {"iou": 0.25}
    b = load_model_bundle(out)
    src = load_model_bundle(gan_path).generator.state_dict()
    assert all(torch.equal(v, src[k].half().float() if v.is_floating_point() else src[k])
               for k, v in b.generator.state_dict().items())  # the GAN's weights, stored as fp16
    assert b.phi is not None and b.discriminator is not None
    stored = b.unet.state_dict()
    assert all(torch.equal(stored[k], seen[k]) for k in seen)  # the score saw the fp16-rounded weights
    assert not _same(b.unet, old_unet)
    assert b.metadata["metrics"] == {"iou": 0.25} and b.metadata["preset"] == "tiny"
    assert b.metadata["unet"]["step"] == 7 and b.metadata["unet"]["source"] == str(unet_path)
    assert b.unet_size == 32 and b.metadata["wall_s"] == {"gan": 5}

    assemble_bundle(gan_path, unet_path, out)  # no score: the GAN file's old numbers must not survive
    assert "metrics" not in load_model_bundle(out).metadata


def test_bundle_cli_scores_the_stored_unet_and_refuses_a_file_without_one(tmp_path: Path, capsys) -> None:
    from training.bundle import main

    g, phi, unet, d = _nets()
    gan_path, unet_path = tmp_path / "gan.safetensors", tmp_path / "unet.safetensors"
    save_model_bundle(gan_path, g, phi, PERTURB, None, d, {"metrics": {"iou": 0.99}})
    save_bundle(unet_path, {"unet": unet}, {"unet": unet.cfg}, {"unet_size": 32})
    out = tmp_path / "model.safetensors"
    assert main(["--gan", str(gan_path), "--unet", str(unet_path), "--out", str(out), "--half", "--limit", "8",
                 "--size", "32"]) == 0
    metrics = load_model_bundle(out).metadata["metrics"]
    assert metrics["n"] == 8 and metrics["split"] == "test" and 0 <= metrics["iou"] <= 1
    assert metrics["iou"] != 0.99

    bad = tmp_path / "bad.safetensors"
    assert main(["--gan", str(gan_path), "--unet", str(gan_path), "--out", str(bad), "--no-eval"]) == 2
    assert "unet" in capsys.readouterr().err and not bad.exists()
    with pytest.raises(SystemExit):
        main(["--gan", str(gan_path), "--unet", str(unet_path), "--out", str(tmp_path / "x.pt")])
