"""Bundles and training states: round trips, atomic writes, and every refusal."""

import json
import os
import pickle

import pytest
import torch

from elgan import checkpoint as ckpt
from elgan.config import GeneratorConfig, from_dict, gan_config
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform


@pytest.fixture
def nets():
    cfg = gan_config(32, "E", width=4)
    return cfg, LayeredGenerator(cfg.generator), LatentTransform(cfg.phi)


def test_bundle_round_trip(tmp_path, nets):
    cfg, G, phi = nets
    path = tmp_path / "b.safetensors"
    ckpt.save_bundle(path, {"generator": G, "phi": phi}, {"generator": cfg.generator, "phi": cfg.phi},
                     {"metrics": {"iou": 0.5}})
    b = ckpt.load_bundle(path, require=["generator", "phi"])
    assert set(b.tensors) == {"generator", "phi"}
    assert b.metadata["metrics"]["iou"] == 0.5
    G2 = LayeredGenerator(from_dict(GeneratorConfig, b.config("generator")))
    ckpt.load_into(G2, b.state_dict("generator"))
    for k, v in G.state_dict().items():
        assert torch.equal(v, G2.state_dict()[k]), k


def test_half_precision_bundle(tmp_path, nets):
    cfg, G, _ = nets
    path = tmp_path / "h.safetensors"
    ckpt.save_bundle(path, {"generator": G}, {"generator": cfg.generator}, half=True)
    b = ckpt.load_bundle(path)
    assert b.state_dict("generator")["background.to_rgb.weight"].dtype == torch.float16
    G2 = LayeredGenerator(cfg.generator)
    ckpt.load_into(G2, b.state_dict("generator"))
    assert G2.background.to_rgb.weight.dtype == torch.float32
    torch.testing.assert_close(G2.background.to_rgb.weight, G.background.to_rgb.weight, atol=1e-3, rtol=1e-3)


def test_refusals(tmp_path, nets):
    cfg, G, phi = nets
    good = tmp_path / "good.safetensors"
    ckpt.save_bundle(good, {"generator": G}, {"generator": cfg.generator})
    data = good.read_bytes()

    with pytest.raises(ckpt.CheckpointError, match="no such file"):
        ckpt.load_bundle(tmp_path / "missing.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="empty"):
        ckpt.load_bundle(tmp_path / "empty.safetensors")
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated|corrupt"):
        ckpt.load_bundle(tmp_path / "trunc.safetensors")
    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ckpt.CheckpointError, match="pickle"):
        ckpt.load_bundle(tmp_path / "p.safetensors")
    (tmp_path / "r.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_bundle(tmp_path / "r.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ckpt.CheckpointError, match="format tag"):
        ckpt.load_bundle(tmp_path / "foreign.safetensors")
    # wrong prefix: the network asked for is not there
    with pytest.raises(ckpt.CheckpointError, match="missing network"):
        ckpt.load_bundle(good, require=["unet"])
    with pytest.raises(ckpt.CheckpointError, match="holds no network 'phi'"):
        ckpt.load_bundle(good).state_dict("phi")
    # wrong shapes: a wider generator
    wide = LayeredGenerator(gan_config(32, "E", width=8).generator)
    with pytest.raises(ckpt.CheckpointError, match="wrong shapes"):
        ckpt.load_into(wide, ckpt.load_bundle(good).state_dict("generator"), "generator")
    with pytest.raises(ckpt.CheckpointError, match="missing keys"):
        ckpt.load_into(G, {}, "generator")


def test_atomic_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    ckpt.atomic_write_bytes(path, b"old")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        ckpt.atomic_write_bytes(path, b"new" * 1000)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"], "no temporary file left behind"


def test_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    rng = torch.Generator().manual_seed(3)
    state = {"step": 7, "best": None, "opt": opt.state_dict(), "rng": rng.get_state(), "t": (1, "a")}
    ckpt.save_state(tmp_path / "s.safetensors", state)
    back = ckpt.load_state(tmp_path / "s.safetensors")
    assert back["step"] == 7 and back["best"] is None and back["t"] == (1, "a")
    opt2 = torch.optim.Adam(model.parameters())
    opt2.load_state_dict(back["opt"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    rng2 = torch.Generator()
    rng2.set_state(back["rng"])
    assert torch.equal(torch.rand(3, generator=rng2), torch.rand(3, generator=rng))
    with pytest.raises(ckpt.CheckpointError, match="format tag"):
        ckpt.load_bundle(tmp_path / "s.safetensors")  # a state is not a bundle


def test_config_json_round_trip():
    cfg = gan_config(64, "C", width=8, batch=16)
    back = from_dict(type(cfg), json.loads(json.dumps(__import__("dataclasses").asdict(cfg))))
    assert back == cfg
    assert back.perturb.eps_dim == 3 and back.phi.eps_dim == 3


def test_optimiser_state_of_the_older_layout_keeps_the_trainable_entries():
    """Runs started when an optimiser held every parameter of its networks (frozen ones too) resume."""
    import torch

    from elgan.checkpoint import held_only

    frozen, a, b = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    frozen.requires_grad_(False)
    old = torch.optim.Adam([frozen, a, b])
    (a.sum() + 2 * b.sum()).backward()
    old.step()
    saved = old.state_dict()
    new = torch.optim.Adam([a, b])
    new.load_state_dict(held_only(saved, [False, True, True]))
    torch.testing.assert_close(new.state[b]["exp_avg"], old.state[b]["exp_avg"])
    assert held_only(new.state_dict(), [True, True]) == new.state_dict()  # the current layout: unchanged
