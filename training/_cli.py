"""What the training CLIs share: the saved config for --resume, --dry-run, and the run-and-report tail."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from elgan import distributed
from elgan.config import from_dict

T = TypeVar("T")


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
