"""The app's side of Gradio's file cache (studio/cache.py): pictures written once and atomically, and
the expiry sweep -- by age, keeping examples, removing emptied folders, safe while requests add files."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from studio import cache

DIGEST = "ab" * 32  # a sha256 hex digest, as Gradio names the folders


def test_write_once_writes_reuses_and_recreates(tmp_path: Path) -> None:
    path = Path(cache.write_once(tmp_path, DIGEST, "image.png", b"pixels"))
    assert path == (tmp_path / DIGEST / "image.png").resolve() and path.read_bytes() == b"pixels"
    inode = path.stat().st_ino
    assert cache.write_once(tmp_path, DIGEST, "image.png", b"pixels") == str(path)
    assert path.stat().st_ino == inode  # reused, not rewritten under a reader
    path.unlink()
    path.parent.rmdir()  # swept meanwhile: written anew
    assert Path(cache.write_once(tmp_path, DIGEST, "image.png", b"pixels")).read_bytes() == b"pixels"
    assert sorted(p.name for p in path.parent.iterdir()) == ["image.png"]  # no temporary file left


def _files(root: Path, n: int) -> list[str]:
    return [cache.write_once(root, f"{k:064x}", "image.png", k.to_bytes(4, "big")) for k in range(n)]


def test_sweep_by_age_keeps_examples_and_removes_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs, examples = set(_files(tmp_path, 4)), set(_files(tmp_path / "ex", 1))
    shared = Path(cache.write_once(tmp_path, DIGEST, "image.png", b"shared"))
    (shared.parent / "other.txt").write_text("not ours")  # a folder with something else in it stays
    loose = tmp_path / "loose.png"  # a file outside a hash folder: its folder (the cache root) stays
    loose.write_bytes(b"x")
    gone = str(tmp_path / ("cd" * 32) / "gone.png")  # a path whose file vanished: forgotten
    paths = outputs | examples | {str(shared), str(loose), gone}
    assert cache.sweep([paths], examples, age_s=3600) == 0  # all young
    assert paths == outputs | examples | {str(shared), str(loose)}
    now = cache.time.time()
    monkeypatch.setattr(cache.time, "time", lambda: now + 7200)  # two hours later
    assert cache.sweep([paths], examples, age_s=3600) == 6
    assert paths == examples and all(Path(p).is_file() for p in examples)
    assert not any(Path(p).parent.exists() for p in outputs)
    assert not shared.exists() and (shared.parent / "other.txt").is_file() and tmp_path.is_dir()


def test_sweep_is_safe_while_requests_add_files(tmp_path: Path) -> None:
    """Gradio's own sweep iterates the live set and dies on "Set changed size during iteration"; this one
    works on a snapshot, never raises, and leaves the paths added meanwhile to the next sweep."""
    paths: set[str] = set(_files(tmp_path, 300))
    stop = threading.Event()
    added: list[str] = []

    def visitor() -> None:
        k = 1000
        while not stop.is_set():
            added.append(cache.write_once(tmp_path, f"{k:064x}", "image.png", b"new"))
            paths.add(added[-1])
            k += 1

    t = threading.Thread(target=visitor)
    t.start()
    try:
        for _ in range(3):
            cache.sweep([paths], set(), age_s=None)
    finally:
        stop.set()
        t.join()
    cache.sweep([paths], set(), age_s=None)
    assert not paths and added and not any(Path(p).exists() for p in added)
    assert sorted(tmp_path.iterdir()) == []
