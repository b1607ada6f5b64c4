"""Each knob is defined once (elgan.config.knob): every flag of train_gan, train_unet and pipeline, every preset
field and every field of the Train tab's commands walks back to a knob, whose default, type and choices it
takes, or is a run-control flag listed here with its reason; configs saved before still load the same."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, get_type_hints

import pytest

from elgan.config import (
    KNOB,
    ConfigError,
    DiscriminatorConfig,
    GanTrainConfig,
    LossConfig,
    default_of,
    from_dict,
    knob_info,
    to_dict,
)
from elgan.pipeline import PRESET_KNOBS, SPECS, PipelineConfig, PresetSpec, pipeline_config
from training import commands
from training import pipeline as pipeline_cli
from training import train_gan as gan_cli
from training import train_unet as unet_cli

PROGRAMS = {"train_gan": gan_cli, "train_unet": unet_cli, "pipeline": pipeline_cli}

# Flags that steer the run, not what it computes: no knob behind them.
RUN_CONTROL = {
    "help": "argparse's -h",
    "out": "the run folder: where results go, not what they are (PipelineConfig.out records it)",
    "resume": "continue the run in --out from its saved config instead of building one",
    "dry_run": "print the resolved config and exit",
    "no_progress": "hide the progress bar",
}

# Knob flags whose default is None ("not given") instead of the knob's default, and what None means.
UNSET = {
    "train_gan": {
        "iters": "with --resume: keep the saved length; fresh: the knob's default",
        "precision": "with --resume: keep the saved precision; fresh: the knob's default",
        "data_workers": "with --resume: keep the saved number; fresh: the knob's default",
        "d_width": "the one documented 'unset' width: the generator's (--width)",
        "mask_floor": "no floor beside the configuration's own (config A: PerturbGAN's at 0.25)",
    },
    "train_unet": {
        "size": "derived: the generator's resolution (or the knob's default without --gan)",
        "steps": "with --resume: keep the saved length; fresh: the knob's default",
        "lr_drop_step": "derived from --steps by config.lr_drop_step (2/3, the paper's 8,000 of 12,000)",
        "precision": "with --resume: keep the saved precision; fresh: the knob's default",
    },
    # every knob flag but these: None keeps the preset's value (or PipelineConfig's default) and is not
    # recorded in the config's overrides
    "pipeline": {"all but preset, data, half": "the preset's value, not recorded as an override"},
}
PIPELINE_SET = {"preset", "data", "half"}


def knob_actions(program: str) -> list[argparse.Action]:
    return [a for a in PROGRAMS[program].build_parser()._actions if a.dest not in RUN_CONTROL]


def knob_type(cls: type, name: str) -> type:
    kind = get_type_hints(cls)[name]
    return next(k for k in (bool, int, float, str) if k == kind or k in getattr(kind, "__args__", ()))


def unset(program: str, dest: str) -> bool:
    return dest not in PIPELINE_SET if program == "pipeline" else dest in UNSET[program]


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_flag_is_a_knob_with_its_default_type_and_choices(program: str) -> None:
    actions = knob_actions(program)
    assert len(actions) > 10
    for action in actions:
        flag = action.option_strings[0]
        assert hasattr(action, "knob"), f"{program} {flag} is neither a knob's flag nor listed in RUN_CONTROL"
        cls, name = action.knob
        info, field = knob_info(cls, name), next(f for f in dataclasses.fields(cls) if f.name == name)
        kind, where = knob_type(cls, name), f"{program} {flag} -> {cls.__name__}.{name}"
        assert info["help"] in action.help, where
        if kind is bool:  # a switch: --x turns a False default on, --no-x a True default off
            assert isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction), where
            assert action.dest == name and action.default == field.default, where
            assert action.const is (not field.default) and flag.startswith("--no-") is field.default, where
            continue
        assert action.type is kind, where
        assert action.default == (None if unset(program, action.dest) else field.default), where
        assert action.choices == info["choices"], where


def _probes(cls: type, name: str) -> list[Any]:
    """Values to give a flag, first valid one wins: each differs from the knob's default."""
    info, kind, d = knob_info(cls, name), knob_type(cls, name), default_of(cls, name)
    if info["choices"] is not None:
        return [c for c in info["choices"] if c != d]
    if kind is str:
        return ["folder:/probe", d + "x", ""]
    return [v for v in (kind(d + 1), kind(2 * d), kind(d + 0.1) if kind is float else 1) if v != d]


BASE = {"train_gan": [], "train_unet": ["--source", "folder:/base"], "pipeline": []}
BASE_FOR = {("train_gan", "stream"): ["--data", "lsun:/x"],  # a stream needs an LMDB; --gan, the stream source
            ("train_unet", "gan"): ["--size", "64", "--gan", "base.safetensors"]}


def _resolve(program: str, argv: list[str]) -> Any:
    cli = PROGRAMS[program]
    parser = cli.build_parser()
    args = parser.parse_args(["--out", "x", *argv])
    return cli.config_from_args(args, parser) if program == "train_unet" else cli.config_from_args(args)


def _instances(cfg: Any, cls: type) -> list[Any]:
    """Every config of type cls inside cfg (the config itself included)."""
    found = [cfg] if type(cfg) is cls else []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            found += _instances(value, cls)
    return found


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_flag_sets_its_knob(program: str) -> None:
    """Given a value, each flag puts it into its knob's field of the resolved config (and nothing held it before)."""
    for action in knob_actions(program):
        if not hasattr(action, "knob"):
            continue  # named by the test above
        cls, name = action.knob
        base = BASE_FOR.get((program, action.dest), BASE[program])
        before = [getattr(c, name) for c in _instances(_resolve(program, base), cls)]
        for value in [True] if action.nargs == 0 else _probes(cls, name):
            argv = [*base, action.option_strings[0]] + ([] if action.nargs == 0 else [str(value)])
            try:
                cfg = _resolve(program, argv)
            except (ConfigError, SystemExit):
                continue  # not a valid value here; try the next
            got = [getattr(c, name) for c in _instances(cfg, cls)]
            want = (not default_of(cls, name)) if action.nargs == 0 else value
            assert want in got and want not in before, (program, action.option_strings[0], value, got, before)
            break
        else:
            pytest.fail(f"{program} {action.option_strings[0]}: no probe value was accepted")


def test_every_preset_field_is_a_knob() -> None:
    assert set(PresetSpec._fields) == set(PRESET_KNOBS)
    for name, (cls, field) in PRESET_KNOBS.items():
        assert KNOB in next(f for f in dataclasses.fields(cls) if f.name == field).metadata, name
        spec_type = get_type_hints(PresetSpec)[name]
        assert knob_type(cls, field) in (spec_type, *getattr(spec_type, "__args__", ())), name
        if name in PresetSpec._field_defaults:  # a preset's optional field starts at the knob's default ...
            want = None if name in ("gan_d_width", "mask_floor") else default_of(cls, field)  # ... or "unset"
            assert PresetSpec._field_defaults[name] == want, name
    for preset, spec in SPECS.items():  # every preset's values are valid for their knobs
        pipeline_config(preset, "folder:/photos")
        for name, (cls, field) in PRESET_KNOBS.items():
            value, info = getattr(spec, name), knob_info(cls, field)
            assert info["choices"] is None or value in info["choices"], (preset, name)


def test_every_preset_field_reaches_its_knob() -> None:
    base = pipeline_config("cpu", "folder:/photos")
    for name, (cls, field) in PRESET_KNOBS.items():
        before = [getattr(c, field) for c in _instances(base, cls)]
        for value in _probes(cls, field):
            try:
                cfg = pipeline_config("cpu", "folder:/photos", **{name: value})
            except ConfigError:
                continue
            assert value in [getattr(c, field) for c in _instances(cfg, cls)] and value not in before, name
            break
        else:
            pytest.fail(f"preset field {name}: no probe value was accepted")


def test_every_train_tab_command_field_is_a_knob_flag_or_run_control() -> None:
    for cmd in (commands.GanCommand, commands.UNetCommand, commands.PipelineCommand):
        actions = commands.options(cmd.MODULE)
        hints = get_type_hints(cmd)
        for f in dataclasses.fields(cmd):
            action = actions[f.name]
            if f.name in RUN_CONTROL:
                continue
            assert hasattr(action, "knob"), f"{cmd.__name__}.{f.name} is not a knob's flag"
            kind = knob_type(*action.knob)
            assert kind in (hints[f.name], *getattr(hints[f.name], "__args__", ())), f"{cmd.__name__}.{f.name}"


def test_the_discriminator_width_has_one_unset_meaning() -> None:
    """Not given (or 0, as saved before) is the generator's width, in train_gan and the pipeline alike."""
    gan = gan_cli.build_parser().parse_args(["--out", "x", "--width", "12"])
    assert gan.d_width is None and gan_cli.config_from_args(gan).discriminator.width == 12
    pipe = pipeline_cli.build_parser().parse_args(["--preset", "tiny"])
    assert pipe.gan_d_width is None and SPECS["tiny"].gan_d_width is None
    tiny = pipeline_cli.config_from_args(pipe)
    assert tiny.gan.discriminator.width == tiny.gan.generator.width == SPECS["tiny"].gan_width
    old = pipeline_config("tiny", gan_d_width=0)
    assert old.gan == tiny.gan and old.overrides == {"gan_d_width": 0}
    assert "E_pi" in knob_info(DiscriminatorConfig, "width")["help"]  # the width E_pi follows is said, not hidden


def test_the_mask_floor_is_off_unless_given_and_keeps_config_a() -> None:
    """--mask-floor puts PerturbGAN's per-sample floor beside any configuration; not given, B has none and A
    keeps its own at 0.25, in train_gan and the pipeline alike."""
    parse = gan_cli.build_parser().parse_args
    assert not gan_cli.config_from_args(parse(["--out", "x", "--config", "B"])).loss.mask_size
    loss = gan_cli.config_from_args(parse(["--out", "x", "--config", "B", "--mask-floor", "0.15"])).loss
    assert loss.mask_size and loss.mask_size_eta == 0.15
    a = gan_cli.config_from_args(parse(["--out", "x", "--config", "A"])).loss
    assert a.mask_size and a.mask_size_eta == 0.25
    pipe = pipeline_cli.build_parser().parse_args
    assert not pipeline_cli.config_from_args(pipe(["--preset", "tiny", "--ablation", "B"])).gan.loss.mask_size
    loss = pipeline_cli.config_from_args(pipe(["--preset", "tiny", "--ablation", "B", "--mask-floor", "0.1",
                                               "--mask-ceiling", "0.35"])).gan.loss
    assert (loss.mask_size, loss.mask_size_eta, loss.mask_ceiling) == (True, 0.1, 0.35)
    with pytest.raises(ConfigError, match=r"mask_size_eta must be in \[0.0, 1.0\], got 1.5"):  # an area
        pipeline_cli.config_from_args(pipe(["--preset", "tiny", "--mask-floor", "1.5"]))


def test_shared_check_reads_the_knob_ranges() -> None:
    with pytest.raises(ConfigError, match=r"GanTrainConfig.lr must be in \(0, 1\), got 2"):
        GanTrainConfig(lr=2)
    with pytest.raises(ConfigError, match=r"LossConfig.moment_reg must be one of"):
        LossConfig(moment_reg="median")
    with pytest.raises(ConfigError, match=r"PipelineConfig.eval_size must be >= 16"):
        PipelineConfig(eval_size=8)
    with pytest.raises(ConfigError, match="GanTrainConfig.seed must be >= 0"):  # train_gan took -1 before
        from_dict(GanTrainConfig, {"seed": -1})


# runs/detach/attached/config.json, written by train_gan before phi gain/walk, moment_reg, equi_form, gamma_bg
SAVED_GAN = """{"ablation": "E", "batch": 32, "beta1": 0.5, "beta2": 0.999, "ckpt_every": 500, "data": "synthetic",
 "data_limit": 0, "data_workers": 4, "device": "auto", "diffaugment": "color",
 "discriminator": {"kind": "paper", "n_categories": 200, "n_super": 20, "proj_channels": 64, "proj_input_size": 0,
                   "recovery_gain": 10.0, "size": 32, "width": 12},
 "fd_every": 500, "fd_net": "lite0", "fd_samples": 500,
 "generator": {"fg_res_blocks": 2, "group_size": 10, "n_categories": 200, "size": 32, "width": 12, "z_dim": 100},
 "hflip": true, "inception": "", "init": "", "iters": 1500, "log_every": 25,
 "loss": {"equi_detach_target": false, "equi_rampup_iters": 300, "equivariance": true, "gamma_b": 2.0,
          "gamma_equi": 0.5, "gamma_r": 1.0, "gamma_reg": 1.0, "gamma_size": 2.0, "mask_size": false,
          "mask_size_eta": 0.25, "recovery": true},
 "lr": 0.0002, "max_minutes": 0.0, "perceptual": "rotnet",
 "perturb": {"max_log2_scale": 0.2, "max_rotate_deg": 15.0, "max_translate": 0.125, "rotate": true, "scale": true,
             "translate": true},
 "phi": {"eps_dim": 4, "hidden": 64, "t_dim": 10, "z_dim": 100},
 "precision": "auto", "rotnet": "", "rotnet_iters": 600, "rrc": true, "rrc_scale": 0.8, "sample_every": 500,
 "seed": 0, "size": 32, "stream": false, "threads": 1}"""

# runs/screen64/E-projected/config.json, a pipeline run (horse preset, projected D) saved before the same knobs
SAVED_PIPELINE = """{"data": "folder:../shared/data/weizmann_horse", "eval_convention": "dataset", "eval_data": "",
 "eval_limit": 0, "eval_size": 128, "eval_split": "test",
 "gan": {"ablation": "E", "batch": 32, "beta1": 0.5, "beta2": 0.999, "ckpt_every": 82,
  "data": "folder:../shared/data/weizmann_horse", "data_limit": 0, "data_workers": 4, "device": "auto",
  "diffaugment": "color,translation,cutout",
  "discriminator": {"kind": "projected", "n_categories": 200, "n_super": 20, "proj_channels": 64,
                    "proj_input_size": 0, "recovery_gain": 1.0, "size": 64, "width": 12},
  "fd_every": 250, "fd_net": "lite0", "fd_samples": 250,
  "generator": {"fg_res_blocks": 2, "group_size": 10, "n_categories": 200, "size": 64, "width": 12, "z_dim": 100},
  "hflip": true, "inception": "", "init": "", "iters": 821, "log_every": 25,
  "loss": {"equi_detach_target": true, "equi_rampup_iters": 405, "equivariance": true, "gamma_b": 2.0,
           "gamma_equi": 0.5, "gamma_r": 1.0, "gamma_reg": 1.0, "gamma_size": 2.0, "mask_size": false,
           "mask_size_eta": 0.25, "recovery": true},
  "lr": 0.0002, "max_minutes": 0.0, "perceptual": "effnet",
  "perturb": {"max_log2_scale": 0.2, "max_rotate_deg": 15.0, "max_translate": 0.125, "rotate": true,
              "scale": true, "translate": true},
  "phi": {"eps_dim": 4, "hidden": 64, "t_dim": 10, "z_dim": 100},
  "precision": "auto", "rotnet": "", "rotnet_iters": 600, "rrc": true, "rrc_scale": 0.8, "sample_every": 82,
  "seed": 0, "size": 64, "stream": false, "threads": 1},
 "half": false, "out": "/work/runs/screen64/E-projected",
 "overrides": {"ablation": "E", "data": "folder:../shared/data/weizmann_horse", "disc": "projected",
               "fd_every": 250, "gan_iters": 821, "gan_minutes": 0.0, "perceptual": "effnet", "threads": 1,
               "unet_minutes": 0.0, "unet_steps": 300},
 "preset": "horse", "size": 64,
 "unet": {"batch": 32, "ckpt_every": 30, "device": "auto", "gan": "", "log_every": 25, "lr": 0.001,
          "lr_drop_factor": 0.2, "lr_drop_step": 200, "max_minutes": 0.0, "precision": "auto", "seed": 0,
          "size": 64, "source": "stream", "steps": 300, "threads": 1, "unet": {"base": 16, "depth": 4,
          "in_channels": 3}, "val_every": 250, "val_fraction": 0.1, "val_size": 500}}"""


def _holds(saved: dict[str, Any], loaded: dict[str, Any]) -> bool:
    """Every saved value is loaded unchanged (nested configs compared key by key)."""
    return all(_holds(v, loaded[k]) if isinstance(v, dict) and k != "overrides" else loaded[k] == v
               for k, v in saved.items())


@pytest.mark.parametrize(("cls", "text"), [(GanTrainConfig, SAVED_GAN), (PipelineConfig, SAVED_PIPELINE)])
def test_configs_saved_before_load_the_same(cls: type, text: str) -> None:
    saved = json.loads(text)
    cfg = from_dict(cls, saved)
    loaded = to_dict(cfg)
    assert _holds(saved, loaded)
    gan = loaded["gan"] if cls is PipelineConfig else loaded
    # the knobs added since take their defaults: the run trained as it did
    assert gan["phi"]["gain"] == 1.0 and gan["phi"]["walk"] == "free" and gan["loss"]["gamma_bg"] == 0.0
    assert gan["loss"]["moment_reg"] == "batch" and gan["loss"]["equi_form"] == "absolute"
    assert from_dict(cls, loaded) == cfg
