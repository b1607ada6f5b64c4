"""The GAN trainer: a tiny run writes everything, resume is exact, and the CLI behaves."""

import json
import math

import pytest
import torch

from elgan.checkpoint import CheckpointError, load_bundle
from elgan.config import gan_config
from elgan.train.gan_trainer import GanTrainer, train_gan
from training import train_gan as cli


def tiny(**over):
    base = dict(data_limit=64, batch=4, iters=4, rotnet_iters=3, fd_every=4, fd_samples=16, sample_every=2,
                ckpt_every=2, log_every=1, diffaugment="color")
    base.update(over)
    return gan_config(32, "E", width=4, **base)


@pytest.mark.parametrize("ablation", ["A", "E"])
def test_tiny_run_writes_run_folder(tmp_path, ablation):
    cfg = gan_config(32, ablation, width=4, data_limit=64, batch=4, iters=4, rotnet_iters=3, fd_every=4,
                     fd_samples=16, sample_every=2, ckpt_every=2, log_every=1)
    result = train_gan(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.steps == 4 and result.completed
    for name in ("config.json", "log.jsonl", "state.safetensors", "last.safetensors", "best.safetensors",
                 "samples/0000004.png"):
        assert (run / name).exists(), name
    # a RotNet is trained only for eq. (8)'s perceptual net; selection is by FD-Lite0 either way
    assert (run / "rotnet.safetensors").exists() == (ablation == "E")
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert "FD-Lite0" in lines[-1] and "mask_area" in lines[-1]
    # layer health at every logged step: D's background-alone score; E_x / E_pi top-1 where recovery is on
    for r in lines:
        assert isinstance(r["health_bg_minus_composite"], float) and 0 <= r["mask_binary_frac"] <= 1
        assert ("health_ex_top1" in r and "health_epi_top1" in r) == (ablation != "A")
        assert ("health_warning" in r) == (r["health_bg_minus_composite"] >= 0)
    assert ("g_mask_size" in lines[0]) == (ablation == "A")
    assert ("g_equivariance" in lines[0]) == (ablation == "E")
    assert ("g_recover_c" in lines[0]) == (ablation != "A")
    with pytest.raises(FileExistsError):
        train_gan(cfg, run, progress=False)


def test_resume_matches_uninterrupted_run(tmp_path):
    cfg = tiny(iters=3, ckpt_every=2)
    straight = GanTrainer(cfg, tmp_path / "a", progress=False)
    (tmp_path / "a").mkdir(exist_ok=True)
    logs_a = [straight.train_step() for _ in range(3)]

    (tmp_path / "b").mkdir()
    first = GanTrainer(cfg, tmp_path / "b", progress=False)
    first.train_step()
    first.train_step()
    first.save()
    del first
    resumed = GanTrainer(cfg, tmp_path / "b", progress=False)
    resumed.load()
    assert resumed.step == 2
    logs_b = resumed.train_step()
    for key in ("d_adv", "g_adv", "g_recover_c", "g_equivariance", "mask_area"):
        assert logs_b[key] == pytest.approx(logs_a[2][key], rel=1e-5, abs=1e-6), key


def test_resume_refuses_changed_config(tmp_path):
    train_gan(tiny(iters=2), tmp_path / "r", progress=False)
    other = GanTrainer(tiny(iters=2, lr=1e-3), tmp_path / "r", progress=False)
    with pytest.raises(Exception, match="another configuration"):
        other.load()


def test_cli_smoke_and_resume(tmp_path, capsys):
    out = tmp_path / "smoke"
    args = ["--config", "E", "--size", "32", "--width", "4", "--batch", "4", "--iters", "2", "--rotnet-iters", "2",
            "--fd-samples", "8", "--out", str(out), "--no-progress"]
    assert cli.main(args + ["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"]["equi_rampup_iters"] == 1  # rampup_iters(2): 400/810
    import elgan.train.gan_trainer as gt
    orig = gt.load_dataset
    gt.load_dataset = lambda *a, **k: orig(*a, **{**k, "limit": 32})
    try:
        assert cli.main(args) == 0
        assert cli.main(["--out", str(out), "--resume", "--iters", "3", "--no-progress"]) == 0
    finally:
        gt.load_dataset = orig
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 3


@pytest.mark.parametrize("bad", [["--size", "48"], ["--config", "F"], ["--batch", "1"], ["--lr", "-1"],
                                 ["--diffaugment", "sharpen"], ["--categories", "25"], ["--categories", "0"]])
def test_cli_rejects_bad_flags(tmp_path, bad):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--out", str(tmp_path / "x"), "--dry-run", *bad])
    assert exc.value.code == 2


def test_cli_resume_without_run(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["--out", str(tmp_path / "none"), "--resume"])


def test_no_nan_in_a_few_steps(tmp_path):
    trainer = GanTrainer(tiny(iters=5), tmp_path, progress=False)
    for _ in range(5):
        logs = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())


@pytest.mark.parametrize("disc", ["paper", "projected"])
def test_the_measured_options_train_and_log_their_terms(disc, tmp_path):
    """Relative eq. (8), fixed-length walk, known-moment L_reg and the background-is-fake term together."""
    from dataclasses import replace

    from elgan.gan_loss import PHASES

    cfg = tiny(iters=2, disc=disc, phi_gain=2.0, phi_walk="fixed_length", perceptual="effnet",
               loss_overrides={"equi_form": "relative", "moment_reg": "known", "gamma_bg": 1.0,
                               "gamma_equi_pixel": 1.0, "mask_ceiling": 0.01, "gamma_indep": 1.0})
    assert cfg.phi.walk == "fixed_length" and cfg.loss.gamma_bg == 1.0
    trainer = GanTrainer(cfg, tmp_path, progress=False)
    logs = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert logs["d_background_fake"] > 0 and "d_background_fake" in PHASES["D"].terms
    assert 0 < logs["g_equivariance"] < 5  # relative: about 1 for a walk that does not make the move
    assert 0 < logs["g_equi_pixel"] < 5 and "g_equi_pixel" in PHASES["G"].terms
    assert logs["g_mask_ceiling"] > 0 and "g_mask_ceiling" in PHASES["G"].terms  # tiny masks exceed 0.01
    assert math.isfinite(logs["g_independence"]) and "g_independence" in PHASES["G"].terms
    plain = replace(cfg.loss, gamma_bg=0.0, gamma_equi_pixel=0.0, mask_ceiling=0.0, gamma_indep=0.0)
    off = GanTrainer(replace(cfg, loss=plain), tmp_path / "off", progress=False)
    logs_off = off.train_step()
    assert not {"d_background_fake", "g_equi_pixel", "g_mask_ceiling", "g_independence"} & set(logs_off)


def test_init_from_another_run_fine_tunes(tmp_path):
    """--init copies G, D, E_pi (and Phi when its dims match) and nothing else: step and optimisers are fresh."""
    source = train_gan(tiny(iters=2, ckpt_every=2), tmp_path / "src", progress=False)
    for ablation, phi_copied in (("E", True), ("A", False)):  # A's Phi has 2 eps dims, E's has 4
        cfg = gan_config(32, ablation, width=4, data_limit=64, batch=4, iters=1, rotnet_iters=3, fd_every=1,
                         fd_samples=16, init=str(source.last_checkpoint))
        trainer = GanTrainer(cfg, tmp_path / f"ft{ablation}", progress=False)
        trainer.init_from(cfg.init)
        b = load_bundle(source.last_checkpoint)
        for name, net in (("generator", trainer.G), ("discriminator", trainer.D), ("super_recovery", trainer.E_pi)):
            for key, value in net.state_dict().items():
                assert torch.equal(value, b.tensors[name][key].to(value.dtype)), (name, key)
        same_phi = all(torch.equal(v, b.tensors["phi"][k]) for k, v in trainer.phi.state_dict().items()
                       if b.tensors["phi"][k].shape == v.shape)
        assert same_phi == phi_copied
        assert trainer.step == 0 and not trainer.opt_g.state


def test_init_refuses_another_architecture(tmp_path):
    source = train_gan(tiny(iters=2, ckpt_every=2), tmp_path / "src", progress=False)
    cfg = gan_config(32, "E", width=8, data_limit=64, batch=4, iters=1, rotnet_iters=3,
                     init=str(source.last_checkpoint))
    with pytest.raises(CheckpointError, match="does not match"):
        train_gan(cfg, tmp_path / "wide", progress=False)


def test_cli_augmentations_are_switchable_and_recorded(tmp_path, capsys):
    """Each augmentation of the few-photo setting can be turned off, and config.json says which ran."""
    assert cli.main(["--out", str(tmp_path / "x"), "--dry-run", "--no-hflip", "--no-rrc",
                     "--diffaugment", "color,translation,cutout", "--init", "some.safetensors"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["hflip"], cfg["rrc"], cfg["diffaugment"], cfg["init"]) == (
        False, False, "color,translation,cutout", "some.safetensors")
    assert cli.main(["--out", str(tmp_path / "y"), "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["hflip"], cfg["rrc"], cfg["diffaugment"], cfg["init"]) == (True, True, "color", "")


def test_cpu_layout_is_channels_last_and_checkpoints_stay_portable(tmp_path):
    # the fast NHWC layout is an implementation detail: the file holds plain tensors that load into
    # NCHW modules, and one step in either layout gives the same losses up to float rounding
    cfg = tiny(iters=1)
    nhwc = GanTrainer(cfg, tmp_path / "a", progress=False)
    convs = [w for w in nhwc.G.parameters() if w.dim() == 4]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    nhwc.save()
    saved = load_bundle(tmp_path / "a" / "last.safetensors").tensors["generator"]
    assert all(t.is_contiguous() for t in saved.values())
    for k, t in nhwc.G.state_dict().items():
        assert torch.equal(saved[k], t), k

    nchw = GanTrainer(cfg, tmp_path / "b", progress=False)
    for net in (nchw.G, nchw.D, nchw.E_pi, nchw.feature_net):
        net.to(memory_format=torch.contiguous_format)
    assert all(w.is_contiguous() for w in nchw.G.parameters())
    a, b = nhwc.train_step(), nchw.train_step()
    for key in ("d_adv", "g_adv", "g_recover_c", "mask_area"):
        assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key


def test_one_super_category_trains(tmp_path):
    # a single-class collection: c with 10 values, one c_sup (E_pi's loss is then identically 0)
    cfg = tiny(iters=2, categories=10, group_size=10)
    assert cfg.generator.n_super == 1 and cfg.discriminator.n_categories == 10
    result = train_gan(cfg, tmp_path / "run", progress=False)
    assert result.steps == 2
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["g_adv"])) for r in logs)


def test_init_from_an_app_bundle_without_e_pi(tmp_path):
    """A pipeline's result (fp16 app bundle: G, Phi, D, no E_pi) is a valid start; E_pi starts fresh."""
    from elgan.bundle import save_model_bundle

    source = GanTrainer(tiny(iters=1), tmp_path / "src", progress=False)
    source.train_step()
    path = tmp_path / "app.safetensors"
    save_model_bundle(path, source.G, source.phi, source.cfg.perturb, discriminator=source.D, half=True)
    trainer = GanTrainer(tiny(iters=1), tmp_path / "ft", progress=False)
    fresh_e_pi = {k: v.clone() for k, v in trainer.E_pi.state_dict().items()}
    trainer.init_from(path)
    for key, value in trainer.G.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, source.G.state_dict()[key].half().float(), atol=0), key
    assert all(torch.equal(v, fresh_e_pi[k]) for k, v in trainer.E_pi.state_dict().items())
    assert torch.isfinite(torch.tensor(list(trainer.train_step().values()))).all()


def test_fd_is_measured_at_every_fd_step_whatever_log_every_is(tmp_path):
    """fd_every need not be a multiple of log_every: an FD step is always logged and measured."""
    result = train_gan(tiny(iters=6, fd_every=3, log_every=4, ckpt_every=6, sample_every=6), tmp_path / "r",
                       progress=False)
    lines = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 4, 6]
    assert [("FD-Lite0" in r) for r in lines] == [True, False, True]
    assert result.best_fd == min(r["FD-Lite0"] for r in lines if "FD-Lite0" in r)


def test_projected_d_and_effnet_perceptual_run_end_to_end(tmp_path):
    """--disc projected --perceptual effnet: no RotNet trained, D recorded in config and bundle."""
    out = tmp_path / "proj"
    args = ["--config", "E", "--size", "32", "--width", "4", "--batch", "4", "--iters", "2", "--fd-samples", "8",
            "--fd-every", "2", "--disc", "projected", "--perceptual", "effnet", "--data-limit", "16",
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    assert not (out / "rotnet.safetensors").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["discriminator"]["kind"] == "projected" and cfg["perceptual"] == "effnet"
    bundle = load_bundle(out / "best.safetensors")
    assert bundle.configs["discriminator"]["kind"] == "projected"
    from elgan.bundle import load_model_bundle
    from elgan.nets.projected import ProjectedDiscriminator

    assert isinstance(load_model_bundle(out / "best.safetensors").discriminator, ProjectedDiscriminator)


def test_one_default_for_the_rampup():
    from elgan.config import GanTrainConfig, rampup_iters

    assert rampup_iters(810) == 400
    assert gan_config(32, "E", iters=8100).loss.equi_rampup_iters == 4000
    assert GanTrainConfig().loss.equi_rampup_iters == rampup_iters(GanTrainConfig().iters)
    given = gan_config(32, "E", iters=8100, loss_overrides={"equi_rampup_iters": 7})
    assert given.loss.equi_rampup_iters == 7


@pytest.mark.parametrize("disc", ["paper", "projected"])
def test_each_optimiser_holds_exactly_what_the_phase_table_names(disc, tmp_path):
    from elgan.gan_loss import PHASES

    tr = GanTrainer(tiny(iters=1, disc=disc), tmp_path, progress=False)
    nets = tr.networks()
    seen: set[int] = set()
    for phase in PHASES.values():
        held = {id(p) for group in getattr(tr, phase.optimiser).param_groups for p in group["params"]}
        named = {id(p) for n in phase.steps for p in nets[n].parameters() if p.requires_grad}
        assert held == named and not held & seen
        seen |= held
    trainable = {id(p) for net in nets.values() for p in net.parameters() if p.requires_grad}
    assert seen == trainable  # every trainable weight is stepped by exactly one phase
    logs = tr.train_step()
    for name, phase in PHASES.items():
        losses = {k for k in logs if k.startswith(name.lower() + "_") and k not in (
            "d_real", "d_fake", "d_total", "g_total")}
        assert losses <= set(phase.terms), losses - set(phase.terms)
