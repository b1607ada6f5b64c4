"""The equivariance measurement: mask moments on hand-made masks, ratio 1 for a walk that does nothing."""

import json
import math

import pytest
import torch

from elgan.bundle import load_model_bundle, save_model_bundle
from elgan.config import gan_config
from elgan.equivariance import mask_moments, measure_equivariance, meets_target
from elgan.nets.generator import LayeredGenerator
from elgan.nets.phi import LatentTransform
from training import equivariance as cli


def ellipse(n: int, cx: float, cy: float, a: float, b: float, angle_deg: float) -> torch.Tensor:
    ys, xs = torch.meshgrid((torch.arange(n) + 0.5) / n - 0.5, (torch.arange(n) + 0.5) / n - 0.5, indexing="ij")
    t = math.radians(angle_deg)
    u = (xs - cx) * math.cos(t) + (ys - cy) * math.sin(t)
    v = -(xs - cx) * math.sin(t) + (ys - cy) * math.cos(t)
    return ((u / a) ** 2 + (v / b) ** 2 <= 1).float()[None, None]


def test_mask_moments_read_position_orientation_and_size():
    m = mask_moments(torch.cat([ellipse(128, 0.0, 0.0, 0.3, 0.1, 0.0), ellipse(128, 0.1, -0.05, 0.3, 0.1, 20.0),
                                ellipse(128, 0.0, 0.0, 0.15, 0.05, 0.0)]))
    assert abs(m["tx"][1] - 0.1) < 0.005 and abs(m["ty"][1] + 0.05) < 0.005
    assert abs(m["rotation"][0]) < 0.5 and abs(m["rotation"][1] - 20) < 1.0
    assert abs((m["scale"][0] - m["scale"][2]) - 1.0) < 0.05  # half the axes: half the sqrt(area)


def test_a_walk_that_does_nothing_has_ratio_one_and_fails_the_target():
    torch.manual_seed(0)
    cfg = gan_config(32, "E", width=4)
    G, phi = LayeredGenerator(cfg.generator), LatentTransform(cfg.phi)
    with torch.no_grad():
        phi.mlp[-1].weight.zero_()
        phi.mlp[-1].bias.zero_()
    result = measure_equivariance(G, phi, cfg.perturb, seeds=tuple(range(4)))
    assert set(result) == {"tx", "ty", "rotation", "scale"}
    for r in result.values():
        assert abs(r["ratio"] - 1) < 1e-4 and abs(r["walk_move"]) < 1e-6
    assert abs(result["rotation"]["true_move"] - 15) < 3  # T^X turns the mask by the training range's 15 deg
    assert not meets_target(result)


def test_cli_prints_and_writes_into_the_bundle(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = gan_config(32, "E", width=4)
    path = tmp_path / "b.safetensors"
    save_model_bundle(path, LayeredGenerator(cfg.generator), LatentTransform(cfg.phi), cfg.perturb,
                      metadata={"note": "kept"})
    assert cli.main([str(path), "--seeds", "3", "--write", "--json"]) == 0
    out = capsys.readouterr().out
    record = json.loads(out.strip().splitlines()[-1])
    assert record["target_met"] is False and record["seeds"] == 3  # fewer than 12 seeds never meets it
    meta = load_model_bundle(path).metadata
    assert meta["note"] == "kept" and meta["equivariance"]["directions"].keys() == record["directions"].keys()


def test_the_app_says_in_words_what_the_sliders_do():
    from studio.registry import equivariance_line

    def record(ratio: float, met: bool) -> dict:
        return {"seeds": 12, "target_met": met, "directions": {
            "scale": {"ratio": ratio}, "tx": {"ratio": ratio}, "ty": {"ratio": ratio}, "rotation": {"ratio": ratio}}}

    assert "barely move" in equivariance_line(record(1.02, False))
    assert "only in part" in equivariance_line(record(0.7, False))
    line = equivariance_line(record(0.3, True))
    assert "move the object" in line and line.index("tx 0.30") < line.index("rotation") < line.index("scale")
    assert equivariance_line(None) == "" and equivariance_line({"directions": "x"}) == ""


def test_cli_measures_a_generator_under_another_files_walk(tmp_path, capsys):
    torch.manual_seed(0)
    e_cfg, b_cfg = gan_config(32, "E", width=4), gan_config(32, "B", width=4)
    idle = LatentTransform(e_cfg.phi)
    with torch.no_grad():  # a walk that does nothing: ratio 1 on any generator
        idle.mlp[-1].weight.zero_()
        idle.mlp[-1].bias.zero_()
    walker, plain = tmp_path / "e.safetensors", tmp_path / "b.safetensors"
    save_model_bundle(walker, LayeredGenerator(e_cfg.generator), idle, e_cfg.perturb)
    save_model_bundle(plain, LayeredGenerator(b_cfg.generator), None, b_cfg.perturb)
    assert cli.main([str(plain), "--phi-from", str(walker), "--seeds", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["phi_from"] == str(walker) and set(record["directions"]) == {"tx", "ty", "rotation", "scale"}
    assert all(abs(r["ratio"] - 1) < 1e-4 for r in record["directions"].values())
    with pytest.raises(SystemExit):  # a file's own walk only
        cli.main([str(plain), "--phi-from", str(walker), "--write"])
    with pytest.raises(SystemExit):  # B has no walk of its own
        cli.main([str(plain)])
