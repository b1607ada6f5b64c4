"""The one-command pipeline, end to end on the tiny preset (CPU, well under a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from elgan.config import ConfigError, from_dict, to_dict
from elgan.pipeline import CPU_GAN_MINUTES, CPU_UNET_MINUTES, PAPER_GAN_ITERS, PipelineConfig, pipeline_config


def test_presets() -> None:
    paper = pipeline_config("paper", "cub:/data/CUB_200_2011")
    assert paper.size == 128 and paper.gan.size == 128 and paper.gan.generator.width == 64
    assert paper.gan.batch == 32 and paper.gan.iters == PAPER_GAN_ITERS == 253_125
    unet = paper.unet
    assert (unet.steps, unet.batch, unet.lr_drop_step, unet.size) == (12000, 95, 8000, 128)
    cpu = pipeline_config("cpu")
    assert cpu.size == 64 and cpu.gan.max_minutes + cpu.unet.max_minutes <= 115  # the 2-hour budget
    assert cpu.gan.max_minutes == CPU_GAN_MINUTES and cpu.unet.max_minutes == CPU_UNET_MINUTES
    tiny = pipeline_config("tiny", gan_iters=12, unet_steps=9)
    assert tiny.gan.iters == 12 and tiny.unet.steps == 9 and tiny.unet.lr_drop_step == 6
    assert tiny.overrides == {"gan_iters": 12, "unet_steps": 9}
    assert from_dict(PipelineConfig, to_dict(tiny)) == tiny
    with pytest.raises(ConfigError, match="unknown"):
        pipeline_config("tiny", gan_itres=3)
    with pytest.raises(ConfigError):
        pipeline_config("huge")


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from elgan.bundle import load_model_bundle
    from training.evaluate import main as evaluate_main
    from training.pipeline import main

    out = tmp_path / "run"
    assert main(["--preset", "tiny", "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "[gan]" in printed and "[unet]" in printed and "[eval]" in printed and "wall time" in printed
    scores = json.loads(printed.strip().splitlines()[-1])
    assert set(scores) == {"acc", "iou", "miou", "n"} and scores["n"] == 64

    bundle = load_model_bundle(out / "bundle.safetensors")
    assert bundle.unet is not None and bundle.phi is not None and bundle.discriminator is not None
    assert bundle.size == 32 and bundle.unet_size == 32
    meta = bundle.metadata
    assert meta["preset"] == "tiny" and meta["overrides"] == {"threads": 1}
    assert meta["metrics"]["iou"] == scores["iou"] and meta["metrics"]["size"] == 128
    assert set(meta["wall_s"]) == {"features", "gan", "unet", "eval", "bundle"}
    assert meta["features"]["status"] == "miss" and "[features] RotNet cache miss" in printed
    assert json.loads((out / "config.json").read_text())["preset"] == "tiny"
    z, c = bundle.generator.sample_codes(2)
    with torch.no_grad():
        assert bundle.unet(bundle.generator(z, c).image).shape == (2, 1, 32, 32)

    # resume: every stage is done, so only the bundle is rewritten
    assert main(["--resume", "--out", str(out), "--no-progress"]) == 0
    assert "(done earlier)" in capsys.readouterr().out
    # a copied (or moved) run resumes in the folder it is in, never in the one it began in
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    (moved / "bundle.safetensors").unlink()
    before = (out / "bundle.safetensors").stat().st_mtime_ns
    assert main(["--resume", "--out", str(moved), "--no-progress"]) == 0
    assert (moved / "bundle.safetensors").exists() and (out / "bundle.safetensors").stat().st_mtime_ns == before
    assert str(moved / "bundle.safetensors") in capsys.readouterr().out
    # a second fresh run into the same folder is refused instead of overwriting it
    assert main(["--preset", "tiny", "--out", str(out), "--no-progress"]) == 2
    # the bundle scores through the evaluate CLI just like a U-Net checkpoint
    assert evaluate_main(["--unet", str(out / "bundle.safetensors"), "--data", "synthetic", "--limit", "16",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 16


def test_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    from training.pipeline import main

    assert main(["--preset", "cpu", "--unet-steps", "100", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["preset"] == "cpu" and cfg["unet"]["steps"] == 100 and cfg["size"] == 64


def test_horse_presets_need_a_photo_folder() -> None:
    with pytest.raises(ConfigError, match="folder"):
        pipeline_config("horse")
    cfg = pipeline_config("horse", "folder:/photos", ablation="A", gan_init="/x.safetensors")
    assert cfg.size == 64 and cfg.gan.ablation == "A" and not cfg.gan.loss.recovery and cfg.gan.init == "/x.safetensors"
    assert cfg.gan.diffaugment == "color,translation,cutout" and cfg.eval_spec == "folder:/photos"
    assert pipeline_config("horse128", "folder:/photos").size == 128


def test_size_of_c_is_a_pipeline_knob(capsys: pytest.CaptureFixture[str]) -> None:
    from training.pipeline import main

    assert main(["--preset", "horse", "--data", "folder:/photos", "--gan-categories", "20",
                 "--gan-group-size", "20", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["gan"]["generator"]["n_categories"] == 20 and cfg["gan"]["generator"]["group_size"] == 20
    assert cfg["gan"]["discriminator"]["n_categories"] == 20 and cfg["gan"]["discriminator"]["n_super"] == 1
    assert pipeline_config("cpu").gan.generator.n_categories == 200  # the paper's default is untouched
    with pytest.raises(ConfigError, match="multiple of group_size"):
        pipeline_config("cpu", gan_categories=25)


def test_discriminator_width_is_a_pipeline_knob(capsys: pytest.CaptureFixture[str]) -> None:
    from training.pipeline import main

    assert main(["--preset", "tiny", "--gan-d-width", "16", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["gan"]["discriminator"]["width"] == 16 and cfg["gan"]["generator"]["width"] == 4
    default = pipeline_config("tiny")
    assert default.gan.discriminator.width == default.gan.generator.width == 4  # 0 keeps D at G's width


def test_ablation_variants_keep_the_discriminator_width() -> None:
    from elgan.ablation import variant_config

    for name in ("A", "E", "no-perturb"):
        assert variant_config(name, Path("/tmp/abl"), size=32, gan_d_width=24).gan.discriminator.width == 24


def test_resume_may_extend_the_budget_but_nothing_else(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run stopped by its time cap is continued with a longer one; its ramp-up and networks stay as saved."""
    from training.pipeline import main

    out = tmp_path / "run"
    out.mkdir()
    saved = pipeline_config("cpu", ablation="E", gan_iters=1200, out=str(out))
    (out / "config.json").write_text(json.dumps(to_dict(saved)))
    assert main(["--resume", "--out", str(out), "--gan-iters", "1000", "--gan-minutes", "100",
                 "--unet-minutes", "20", "--threads", "1", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["gan"]["iters"], cfg["gan"]["max_minutes"], cfg["unet"]["max_minutes"]) == (1000, 100.0, 20.0)
    assert cfg["gan"]["threads"] == cfg["unet"]["threads"] == 1
    assert cfg["gan"]["loss"]["equi_rampup_iters"] == saved.gan.loss.equi_rampup_iters == 1200 * 400 // 810
    assert cfg["unet"]["steps"] == saved.unet.steps and cfg["gan"]["generator"] == to_dict(saved.gan.generator)
    with pytest.raises(SystemExit):  # a flag that would change the result is refused, not silently ignored
        main(["--resume", "--out", str(out), "--gan-width", "24", "--dry-run"])
    assert "--gan-width" in capsys.readouterr().err
    (out / "gan").mkdir()
    (out / "gan" / "DONE").write_text("{}")  # the GAN stage has ended: its budget flags would do nothing
    with pytest.raises(SystemExit):
        main(["--resume", "--out", str(out), "--gan-iters", "2000", "--dry-run"])
    assert "--gan-iters would change nothing" in capsys.readouterr().err
    assert main(["--resume", "--out", str(out), "--unet-steps", "900", "--threads", "1", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["unet"]["steps"] == 900 and cfg["unet"]["lr_drop_step"] == saved.unet.lr_drop_step


@pytest.mark.slow
def test_tiny_pipeline_with_pretrained_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--disc projected --perceptual effnet end to end: no RotNet, FD-Lite0 selection, D kind in the bundle."""
    from elgan.bundle import load_model_bundle
    from elgan.nets.projected import ProjectedDiscriminator
    from training.pipeline import main

    out = tmp_path / "run"
    assert main(["--preset", "tiny", "--out", str(out), "--threads", "1", "--no-progress", "--disc", "projected",
                 "--perceptual", "effnet", "--gan-iters", "6", "--unet-steps", "4"]) == 0
    capsys.readouterr()
    assert not (out / "gan" / "rotnet.safetensors").exists()
    assert any("FD-Lite0" in line for line in (out / "gan" / "log.jsonl").read_text().splitlines())
    bundle = load_model_bundle(out / "bundle.safetensors")
    assert isinstance(bundle.discriminator, ProjectedDiscriminator)
    saved = json.loads((out / "config.json").read_text())["gan"]
    assert saved["discriminator"]["kind"] == "projected" and saved["perceptual"] == "effnet"
