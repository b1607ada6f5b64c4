"""What the training CLIs share: flags made from the config knobs, the saved config for --resume, --dry-run, and
the run-and-report tail."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from elgan.config import KNOB, from_dict
from elgan.train import distributed

T = TypeVar("T")


def add_knob(parser: argparse.ArgumentParser, cls: type, name: str, flag: str | None = None, *,
             unset: str | None = None, note: str = "") -> argparse.Action:
    """A flag for the knob ``cls.name`` (elgan.config.knob): its type, default, help and choices come from
    the field. ``flag`` defaults to --name-with-dashes; a bool knob is a switch (``--no-x`` turns a True
    default off), its destination the field's name. ``unset`` makes the default None ("not given", e.g. the
    saved value on --resume or a value derived from other flags) and says in the help what it means. ``note``
    adds what only this program needs said. The action carries ``knob = (cls, name)`` (tests walk it back)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    info, kind = f.metadata[KNOB], get_type_hints(cls)[name]
    flag = flag or "--" + name.replace("_", "-")
    help_ = info["help"] + (f"; {note}" if note else "")
    if kind is bool:
        if unset is not None or f.default is not flag.startswith("--no-"):
            raise ValueError(f"{flag}: a switch must turn {cls.__name__}.{name}'s default off")
        shown = " (default: on; this switch turns it off)" if f.default else " (default: off)"
        action = parser.add_argument(flag, dest=name, action="store_false" if f.default else "store_true",
                                     help=help_.replace("%", "%%") + shown)
    else:
        kind = next(k for k in (int, float, str) if k == kind or k in getattr(kind, "__args__", ()))
        shown = f"not given: {unset}" if unset is not None else "default: %(default)r"
        kwargs: dict[str, Any] = {"type": kind, "default": None if unset is not None else f.default,
                                  "help": help_.replace("%", "%%") + f" ({shown})"}
        if info["choices"] is not None:
            kwargs["choices"] = info["choices"]
        action = parser.add_argument(flag, **kwargs)
    action.knob = (cls, name)  # type: ignore[attr-defined]
    return action


def saved_config(parser: argparse.ArgumentParser, out: Path, cls: type[T]) -> T:
    """The config.json of the run in `out`, read from rank 0's disk (the run folder need not be shared);
    a parser error when there is none. ConfigError propagates for the caller to report."""
    saved = out / "config.json"
    text = distributed.on_main(lambda: saved.read_text() if saved.exists() else None)
    if text is None:
        parser.error(f"--resume: {saved} does not exist")
    return from_dict(cls, json.loads(text))


def print_config(cfg: object) -> int:
    """--dry-run: the resolved config as the run folder's config.json would hold it."""
    from elgan.config import to_dict

    print(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    return 0


def run_stage(work: Callable[[], T]) -> tuple[T, bool] | None:
    """Run a training stage, as one process or as one rank of a torchrun group.

    The errors a user can cause -- a run folder that exists or does not, a full disk (the last good
    checkpoint is kept), unreadable data, a state file that cannot be resumed -- print one line on rank 0
    and give None (exit status 2), never a traceback; the process group is always left. Otherwise gives
    the result and whether this process is rank 0 (the one that reports), decided before leaving the group.
    """
    from elgan.checkpoint import CheckpointError
    from elgan.config import ConfigError
    from elgan.data import DataError

    try:
        result = work()
        return result, distributed.is_main()
    except (OSError, DataError, ConfigError, CheckpointError) as exc:
        if distributed.is_main():
            print(f"error: {exc}", file=sys.stderr)
        return None
    finally:
        distributed.cleanup()
