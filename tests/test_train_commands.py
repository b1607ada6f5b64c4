"""Every command the Train tab can start, read back by the real CLI's parser: a flag renamed or changed in a
training program cannot silently break the tab (training/commands.py, studio/jobs.py)."""

from __future__ import annotations

import argparse
import itertools
import sys
import types
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import pytest

from studio import jobs
from tests.test_studio import write_tiny_bundle
from training import commands
from training import pipeline as pipeline_cli
from training import train_gan as gan_cli
from training import train_unet as unet_cli

RUN = Path("/runs/00000-run")
BUNDLE = "checkpoints/default.safetensors"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset folder of each kind the tab recognises: image folder, CUB, LSUN LMDB export."""
    root = tmp_path_factory.mktemp("data")
    (root / "photos").mkdir()
    (root / "birds").mkdir()
    (root / "birds" / "images.txt").write_text("")
    (root / "church").mkdir()
    (root / "church" / "data.mdb").write_bytes(b"")
    return root


def tab_requests(data_root: Path) -> list[tuple[jobs.TrainSettings, bool]]:
    """Every program, dataset kind, resolution and ablation, counts at their limits, fresh and resumed."""
    out = []
    for program, dataset, size, ablation, (iters, steps), threads, resume in itertools.product(
            jobs.PROGRAMS, jobs.list_datasets(data_root), jobs.SIZES, jobs.ABLATIONS,
            ((1, 1), (7, 200), (4321, 9), (jobs.MAX_ITERS, jobs.MAX_ITERS)), (1, jobs.MAX_THREADS), (False, True)):
        s = jobs.TrainSettings(program=program, dataset=dataset, size=size, iters=iters, ablation=ablation,
                               unet_steps=steps, threads=threads, gan_bundle=BUNDLE)
        out.append((jobs.validate(s, data_root, [BUNDLE]), resume))
    return out


def parse(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """[python, -m, module, *flags] -> (module, the module's own parser's reading of the flags)."""
    assert argv[:2] == [sys.executable, "-m"] and all(isinstance(a, str) for a in argv)
    module = argv[2]
    cli = {"training.pipeline": pipeline_cli, "training.train_gan": gan_cli, "training.train_unet": unet_cli}[module]
    return module, cli.build_parser().parse_args(argv[3:])


def expected(s: jobs.TrainSettings, resume: bool, data_root: Path) -> dict[str, object]:
    """What the tab asks the program for, in the program's own terms (args.<dest>)."""
    ask: dict[str, object] = {"out": str(RUN), "no_progress": True, "resume": resume}
    if resume:
        return ask | ({} if s.program == "unet" else {"threads": s.threads})
    data = jobs.data_spec(s.dataset, data_root)
    if s.program == "pipeline":
        return ask | {"preset": jobs.PIPELINE_PRESET[s.size], "data": data, "gan_iters": s.iters,
                      "unet_steps": s.unet_steps, "threads": s.threads}
    if s.program == "gan":
        return ask | {"config": s.ablation, "size": s.size, "width": jobs.GAN_WIDTH[s.size], "iters": s.iters,
                      "data": data, "threads": s.threads}
    return ask | {"gan": s.gan_bundle, "steps": s.unet_steps, "batch": 32, "threads": s.threads}


def test_every_train_tab_command_parses_to_what_the_tab_asked(data_root: Path) -> None:
    requests = tab_requests(data_root)
    assert len(requests) > 1000
    modules = set()
    for s, resume in requests:
        cmd = jobs.command(s, RUN, data_root, resume)
        module, args = parse(jobs.build_argv(s, RUN, data_root, resume))
        modules.add(module)
        assert module == cmd.MODULE == jobs.COMMANDS[s.program].MODULE
        for name, value in expected(s, resume, data_root).items():
            assert getattr(args, name) == value, (s, resume, name)
        # every typed value round-trips; what the command leaves out keeps the program's default
        defaults = commands.parser_of(module).parse_args(["--out", "x"])
        for f in fields(cmd):
            value = getattr(cmd, f.name)
            want = getattr(defaults, f.name) if value is None else value
            assert getattr(args, f.name) == want, (s, resume, f.name)
        if resume and s.program == "pipeline":  # the pipeline refuses any other flag on --resume
            assert set(commands.given(cmd)) - {"out", "no_progress", "resume"} <= set(pipeline_cli.RESUME_OVERRIDES)
    assert modules == {"training.pipeline", "training.train_gan", "training.train_unet"}


def test_the_programs_accept_the_tab_settings(data_root: Path, tmp_path: Path) -> None:
    """Beyond parsing: each program turns the tab's flags into its run configuration without complaint."""
    bundle = str(write_tiny_bundle(tmp_path / "g.safetensors", with_unet=False))
    for size, program in itertools.product(jobs.SIZES, jobs.PROGRAMS):
        s = jobs.TrainSettings(program=program, dataset="photos", size=size, iters=300, unet_steps=40,
                               gan_bundle=bundle)
        _, args = parse(jobs.build_argv(s, RUN, data_root))
        if program == "pipeline":
            cfg = pipeline_cli.config_from_args(args)
            assert (cfg.size, cfg.gan.iters, cfg.unet.steps) == (size, 300, 40)
        elif program == "gan":
            cfg = gan_cli.config_from_args(args)
            assert (cfg.iters, cfg.data) == (300, jobs.data_spec("photos", data_root))
        else:
            cfg = unet_cli.config_from_args(args, unet_cli.build_parser())
            assert (cfg.gan, cfg.steps, cfg.batch) == (bundle, 40, 32)


def test_the_discriminator_width_reaches_the_program(data_root: Path) -> None:
    """The tab's D width is the CLIs' --d-width / --gan-d-width and ends in the run's config; 0 (or a
    resumed run, or a U-Net run) passes no flag, so the programs' own default rule holds."""
    hi = jobs.D_WIDTH["hi"]
    for program, dest, resolve in (("gan", "d_width", lambda a: gan_cli.config_from_args(a)),
                                   ("pipeline", "gan_d_width", lambda a: pipeline_cli.config_from_args(a).gan)):
        for width in (1, 24, hi):
            s = jobs.validate(jobs.TrainSettings(program=program, dataset="photos", size=32, d_width=width),
                              data_root)
            assert getattr(jobs.command(s, RUN, data_root), dest) == width
            _, args = parse(jobs.build_argv(s, RUN, data_root))
            assert getattr(args, dest) == width and resolve(args).discriminator.width == width
        default = jobs.validate(jobs.TrainSettings(program=program, size=32), data_root)
        assert default.d_width == 0
        _, args = parse(jobs.build_argv(default, RUN, data_root))
        cfg = resolve(args)
        assert getattr(args, dest) is None and cfg.discriminator.width == cfg.generator.width
        _, args = parse(jobs.build_argv(replace(s, d_width=24), RUN, data_root, resume=True))
        assert getattr(args, dest) is None  # --resume keeps the saved D
    unet = jobs.TrainSettings(program="unet", d_width=24, gan_bundle=BUNDLE)
    assert not {"--d-width", "--gan-d-width"} & set(jobs.build_argv(unet, RUN, data_root))
    assert jobs.validate(jobs.TrainSettings(d_width="32"), data_root).d_width == 32  # a number as text is fine
    for bad, says in [(-1, rf"0 \(the default: the generator's width\) or in \[1, {hi}\], got -1"),
                      (hi + 1, f"got {hi + 1}"), (10**18, "discriminator width must be 0"),
                      ("16; rm -rf /", "discriminator width must be a whole number"),
                      (None, "whole number"), (float("nan"), "whole number"), (float("inf"), "whole number")]:
        with pytest.raises(jobs.JobError, match=says):
            jobs.validate(jobs.TrainSettings(d_width=bad), data_root)  # type: ignore[arg-type]


def test_flags_come_from_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag renamed in the CLI (same destination) is followed; one gone or of another kind is refused."""
    def build_parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        p.add_argument("--out", required=True)
        p.add_argument("--iterations", dest="iters", type=int)
        p.add_argument("--size", type=int, choices=(32, 64))
        p.add_argument("--data")
        p.add_argument("--fast", action="store_true")
        return p

    monkeypatch.setitem(sys.modules, "fake_cli", types.SimpleNamespace(build_parser=build_parser))

    @dataclass(frozen=True)
    class Fake:
        MODULE: ClassVar[str] = "fake_cli"
        out: str
        iters: int | None = None
        size: int | None = None
        data: str | None = None
        fast: bool = False

    assert commands.flags(Fake(out="o", iters=0, fast=True)) == ["--out", "o", "--iterations", "0", "--fast"]
    assert commands.given(Fake(out="o", iters=0)) == {"out": "o", "iters": 0}
    for bad, match in [(Fake(out="o", size=48), "one of"), (Fake(out="o", iters="5"), "wants int"),
                       (Fake(out="o", data=3), "wants str"), (Fake(out="o", iters=True), "switch")]:
        with pytest.raises(commands.CommandError, match=match):
            commands.flags(bad)

    @dataclass(frozen=True)
    class Gone(Fake):
        steps: int | None = None

    with pytest.raises(commands.CommandError, match="no option for 'steps'"):
        commands.flags(Gone(out="o", steps=3))


def test_real_commands_refuse_unknown_values() -> None:
    with pytest.raises(commands.CommandError, match="one of"):
        commands.argv(commands.GanCommand(out="o", config="F"))
    with pytest.raises(commands.CommandError, match="one of"):
        commands.argv(commands.PipelineCommand(out="o", preset="huge"))
    argv = commands.argv(commands.UNetCommand(out="o", gan=BUNDLE, steps=5))
    assert argv == [sys.executable, "-m", "training.train_unet", "--out", "o", "--gan", BUNDLE, "--steps", "5"]


def test_a_command_that_no_longer_fits_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a CLI drop an option the tab sets, Start is refused before any process, lock or run folder."""
    monkeypatch.setattr(commands, "options", lambda module: {})
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail("a process was started"))
    runs = tmp_path / "runs"
    with pytest.raises(commands.CommandError, match="no option"):
        jobs.start_job(jobs.TrainSettings(), runs, None)
    assert list(runs.iterdir()) == []


def test_the_unet_encoder_reaches_the_program(data_root: Path, tmp_path: Path) -> None:
    """The tab's U-Net encoder is --unet-encoder / --encoder and ends in the U-Net's config; a wrong one is
    refused before anything runs."""
    bundle = str(write_tiny_bundle(tmp_path / "g.safetensors", with_unet=False))
    for encoder in jobs.ENCODERS:
        pipe = jobs.validate(jobs.TrainSettings(program="pipeline", size=32, unet_encoder=encoder), data_root)
        _, args = parse(jobs.build_argv(pipe, RUN, data_root))
        assert pipeline_cli.config_from_args(args).unet.unet.encoder == encoder
        unet = jobs.validate(jobs.TrainSettings(program="unet", size=32, gan_bundle=bundle, unet_encoder=encoder),
                             data_root, [bundle])
        _, args = parse(jobs.build_argv(unet, RUN, data_root))
        assert unet_cli.config_from_args(args, unet_cli.build_parser()).unet.encoder == encoder
    with pytest.raises(jobs.JobError, match="U-Net encoder"):
        jobs.validate(jobs.TrainSettings(program="pipeline", size=32, unet_encoder="resnet; rm -rf /"), data_root)
