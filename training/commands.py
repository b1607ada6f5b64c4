"""Commands of the training programs as typed values, turned into argv by the programs' own parsers.

A program that starts a training run (the app's Train tab) fills one of the dataclasses below and calls
:func:`argv`; it never writes a flag. Field names are the destinations of the program's
``build_parser()`` (``args.<name>``), each a knob's flag or a run-control flag (tests/test_knobs.py);
``None`` and ``False`` mean "not given", so the program's default holds. Each field is looked up among
the parser's options when the argv is built: the flag spelt there is the one used, and a field the parser
no longer has, or one whose kind changed (a switch that now takes a value, a number that became text, a
value outside the option's choices), is a CommandError at once instead of a run that fails in the
background.

    argv(GanCommand(out="runs/r", config="E", size=32, iters=200, threads=1, no_progress=True))
    -> [python, "-m", "training.train_gan", "--out", "runs/r", "--config", "E", "--size", "32", ...]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, ClassVar


class CommandError(ValueError):
    """A command does not fit the program's parser (a field it has no option for, or a wrong kind)."""


@dataclass(frozen=True)
class PipelineCommand:
    """``python -m training.pipeline``: the whole method (GAN, pairs, U-Net, scores, bundle)."""

    MODULE: ClassVar[str] = "training.pipeline"
    out: str
    no_progress: bool = False
    resume: bool = False
    preset: str | None = None
    data: str | None = None
    gan_iters: int | None = None
    unet_steps: int | None = None
    gan_d_width: int | None = None
    threads: int | None = None
    unet_encoder: str | None = None


@dataclass(frozen=True)
class GanCommand:
    """``python -m training.train_gan``: an Equivariant Layered GAN."""

    MODULE: ClassVar[str] = "training.train_gan"
    out: str
    no_progress: bool = False
    resume: bool = False
    config: str | None = None
    size: int | None = None
    width: int | None = None
    d_width: int | None = None
    iters: int | None = None
    data: str | None = None
    sample_every: int | None = None
    ckpt_every: int | None = None
    log_every: int | None = None
    fd_every: int | None = None
    fd_samples: int | None = None
    rotnet_iters: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class UNetCommand:
    """``python -m training.train_unet``: the segmentation U-Net on pairs streamed from a generator."""

    MODULE: ClassVar[str] = "training.train_unet"
    out: str
    no_progress: bool = False
    resume: bool = False
    gan: str | None = None
    steps: int | None = None
    batch: int | None = None
    val_size: int | None = None
    val_every: int | None = None
    ckpt_every: int | None = None
    log_every: int | None = None
    threads: int | None = None
    encoder: str | None = None


Command = PipelineCommand | GanCommand | UNetCommand


@cache
def parser_of(module: str) -> argparse.ArgumentParser:
    """The program's own parser (``<module>.build_parser()``), built once."""
    return importlib.import_module(module).build_parser()


def options(module: str) -> dict[str, argparse.Action]:
    """The program's options by destination (``args.<dest>``)."""
    return {a.dest: a for a in parser_of(module)._actions if a.option_strings}


def _check_kind(where: str, action: argparse.Action, value: Any) -> None:
    if isinstance(value, bool):
        if action.nargs != 0 or action.const is not True:
            raise CommandError(f"{where} is not an on/off switch")
        return
    if action.nargs == 0:
        raise CommandError(f"{where} takes no value, got {value!r}")
    kind = action.type or str
    numeric = kind in (int, float)
    if (numeric and not isinstance(value, int if kind is int else (int, float))) or \
            (kind is str and not isinstance(value, str)):
        raise CommandError(f"{where} wants {getattr(kind, '__name__', kind)}, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise CommandError(f"{where} must be one of {list(action.choices)}, got {value!r}")


def flags(cmd: Command) -> list[str]:
    """The command's options as the program's parser spells them, in field order."""
    known = options(cmd.MODULE)
    out: list[str] = []
    for f in fields(cmd):
        value = getattr(cmd, f.name)
        if value is None or value is False:
            continue
        action = known.get(f.name)
        if action is None:
            raise CommandError(f"python -m {cmd.MODULE} has no option for {f.name!r}")
        flag = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
        _check_kind(f"{flag} of python -m {cmd.MODULE}", action, value)
        out += [flag] if value is True else [flag, str(value)]
    return out


def argv(cmd: Command, python: str = sys.executable) -> list[str]:
    """The whole command as an argv list (no shell): ``[python, "-m", module, *flags]``."""
    return [python, "-m", cmd.MODULE, *flags(cmd)]


def given(cmd: Command) -> dict[str, Any]:
    """The values the command sets (what the program's parser must read back)."""
    values = {f.name: getattr(cmd, f.name) for f in fields(cmd)}
    return {k: v for k, v in values.items() if v is not None and v is not False}
