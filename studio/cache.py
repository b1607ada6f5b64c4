"""The file side of Gradio's cache of output pictures and uploads, as the app needs it under load.

Plain file functions (no gradio import); studio/ui.py installs them into Gradio:

* :func:`write_once` -- how an output picture is stored: Gradio 6 names the file by the hash of its bytes
  and rewrote it in place when two visitors got the same picture, breaking the first one's download;
  here the file is written once, under a temporary name renamed into place, and reused afterwards.
* :func:`sweep` -- Gradio's cache expiry (``gr.Blocks(delete_cache=(every_s, age_s))``) as it should
  work on a busy server. Gradio's own sweep iterates the live sets of cached paths while requests add
  to them (a "Set changed size during iteration" error ends its sweeping task for good), keeps the
  paths of files that vanished (memory), and leaves the folder of every deleted file behind: one
  empty folder (a 4 KB block and an inode) per output picture, forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, MutableSet
from pathlib import Path

log = logging.getLogger("studio")
_HASH = re.compile(r"[0-9a-f]{32,128}")  # Gradio names each cached file's folder by a hex digest


def write_once(cache_dir: str | Path, digest: str, name: str, data: bytes) -> str:
    """Store `data` as cache_dir/digest/name atomically; reuse the file if it is already there. Returns
    its path. The file's time is refreshed on reuse: the sweep ages files by it."""
    folder = Path(cache_dir) / digest
    path = (folder / name).resolve()
    for attempt in range(2):
        folder.mkdir(exist_ok=True, parents=True)
        try:
            if path.is_file() and path.stat().st_size == len(data):
                os.utime(path)  # handed out again: not old
            else:
                tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, path)
            return str(path)
        except FileNotFoundError:  # the sweep removed the folder of an old copy just now: once more
            if attempt:
                raise
    raise AssertionError("unreachable")


def sweep(file_sets: Iterable[MutableSet[str]], keep: set[str], age_s: float | None) -> int:
    """Delete the files of `file_sets` older than `age_s` seconds (all if None), except those in `keep`,
    drop them (and paths of files already gone) from their sets, and remove their folders once empty.
    Safe while other threads add paths; never raises (a failing sweep would stop Gradio's sweeping for
    good). Returns the number of files deleted."""
    deleted, now = 0, time.time()
    try:
        for paths in list(file_sets):
            for path in list(paths):  # a snapshot: other threads add to the live set meanwhile
                if path in keep:
                    continue
                try:
                    if age_s is not None and now - os.lstat(path).st_ctime <= age_s:
                        continue
                    os.remove(path)
                    deleted += 1
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cache sweep: %s: %s", path, exc)
                    continue
                paths.discard(path)
                folder = os.path.dirname(path)
                if _HASH.fullmatch(os.path.basename(folder)):  # Gradio's per-file folder, never a cache root
                    with contextlib.suppress(OSError):  # fails while something else is in it
                        os.rmdir(folder)
    except Exception as exc:  # noqa: BLE001 -- the next sweep tries again
        log.warning("cache sweep stopped early: %s", exc)
    return deleted
