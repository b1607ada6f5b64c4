"""What the training CLIs share: reading a run's saved config for --resume."""

from __future__ import annotations

import argparse
import json
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
