"""The app-facing model bundle: what it holds, a lossless round trip, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elgan.bundle import load_model_bundle, load_unet, save_model_bundle
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
