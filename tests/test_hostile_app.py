"""Hostile and odd uploads and requests through the running app: each refusal is a message and the app
still serves the next request; it serves back only what it generated (no path a client names, nothing
from the repository or the checkpoints); identical concurrent visitors all get whole images.
The same files through studio.segment alone: tests/test_hostile_uploads.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from studio import segment
from tests._uploads import REFUSED, animated_gif, encoded, exif_jpeg, grey16, photo, write
from tests.test_studio import write_tiny_bundle

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests._server import HTTP_S, connect, raw_call, serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("hostile-app")
    write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    (root / "runs").mkdir()
    (root / "runs" / "secret.txt").write_text("run folder contents")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    url, demo = serve(root)
    try:
        yield url, root
    finally:
        demo.close()
        torch.set_num_threads(before)


def _segment(client: Client, path: Path) -> tuple[Any, ...]:
    return client.predict(handle_file(str(path)), 0.5, 1, api_name="/segment")


def _png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def _still_serving(client: Client, tmp_path: Path) -> None:
    mask, _, cutout, _, caption, _ = _segment(client, write(tmp_path / "ok.png", encoded(photo(), "PNG")))
    assert _png(mask).shape == (60, 90, 3) and "90×60" in caption


APP_REFUSED = ["truncated PNG", "truncated JPEG", "text renamed .png", "zero bytes", "PNG bomb 30000x30000",
               "strip 20000x2000 (40 MP, side too long)"]


def test_app_refuses_hostile_uploads_and_keeps_serving(served, tmp_path: Path) -> None:
    client = connect(served[0])
    for case in APP_REFUSED:
        make, says = REFUSED[case]
        with pytest.raises(AppError, match=says):
            _segment(client, make(tmp_path))
        _still_serving(client, tmp_path)
    too_big = write(tmp_path / "huge.png", b"\x89PNG\r\n\x1a\n" + bytes(segment.MAX_UPLOAD_BYTES))
    with pytest.raises(Exception, match="(?i)size|large|413") as refused:  # Gradio refuses it at upload
        _segment(client, too_big)
    assert "Traceback" not in str(refused.value)
    _still_serving(client, tmp_path)


def test_app_segments_odd_modes_in_the_right_orientation(served, tmp_path: Path) -> None:
    client = connect(served[0])
    path = exif_jpeg(tmp_path / "phone.jpg", 6)
    with Image.open(path) as raw:
        shown = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    mask, overlay, cutout, replaced, caption, _ = _segment(client, path)
    assert _png(mask).shape == (90, 60, 3) and "60×90" in caption
    assert np.array_equal(_png(cutout)[..., :3], shown)  # the lossless cut-out holds the displayed pixels
    grey_path, grey_expected = grey16(tmp_path / "grey16.png")
    assert np.array_equal(_png(_segment(client, grey_path)[2])[..., 0], grey_expected)
    assert (_png(_segment(client, animated_gif(tmp_path / "anim.gif"))[2])[..., :3] == (255, 0, 0)).all()
    cmyk = tmp_path / "cmyk.jpg"
    photo().convert("CMYK").save(cmyk, quality=95)
    assert _png(_segment(client, cmyk)[0]).shape == (60, 90, 3)


# ---- what the app serves ----------------------------------------------------------------------------

def test_only_generated_files_are_served(served, tmp_path: Path) -> None:
    import httpx

    base, root = served
    repo = Path(__file__).resolve().parents[1]
    upload = write(tmp_path / "mine.png", encoded(photo(), "PNG"))
    final, _ = raw_call(base, "explore", [None, 3, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, False])
    out = final["output"]["data"][0]
    assert out["path"] and httpx.get(f"{base}gradio_api/file={out['path']}", timeout=HTTP_S).status_code == 200
    refused = ["/etc/passwd", "/etc/hostname", "/proc/self/environ", str(repo / "README.md"), "README.md",
               "app.py", "../../../etc/passwd", str(repo / "checkpoints"), str(root / "checkpoints" /
               "default.safetensors"), str(root / "runs" / "secret.txt"), str(upload),
               str(Path(out["path"]).parent / ".." / ".." / ".." / "etc" / "passwd"),
               "http://127.0.0.1:1/", "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"]
    with httpx.Client(base_url=base, timeout=HTTP_S) as http:
        for target in refused:
            for url in (f"gradio_api/file={target}", f"gradio_api/file/{target.lstrip('/')}",
                        f"file={target}", f"gradio_api/file={target.replace('/', '%2F')}"):
                r = http.get(url)
                assert r.status_code in (403, 404), (url, r.status_code)
                assert "root:" not in r.text and "ELGAN" not in r.text[:2000], url
        r = http.get(f"gradio_api/file={out['path']}")  # the control: still served after all that
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    import app

    assert "allowed_paths" not in app.LAUNCH_OPTIONS  # nothing of the disk is served on purpose


def test_paths_named_by_a_client_are_never_read(served) -> None:
    """Gradio hands the segment handler only files it received as uploads; a file dict naming a server
    path (or the repository's own files) is refused before the handler runs, and nothing is echoed."""
    base, root = served
    repo = Path(__file__).resolve().parents[1]
    for path in ("/etc/passwd", str(repo / "README.md"), str(root / "checkpoints" / "default.safetensors")):
        payload = {"path": path, "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}
        done, messages = raw_call(base, "segment", [None, payload, 0.5, 0])
        assert done["success"] is False, path
        text = json.dumps(messages)
        assert "root:" not in text and "Equivariant" not in text
    done, _ = raw_call(base, "segment", [None, {"path": "http://127.0.0.1:1/x.png", "orig_name": "x.png",
                                                "meta": {"_type": "gradio.FileData"}}, 0.5, 0])
    assert done["success"] is False


# ---- concurrent visitors ----------------------------------------------------------------------------

def test_output_images_are_cached_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio names each output image by its bytes' hash; rewriting the same file while a browser reads it
    broke downloads (see studio.ui.install_atomic_image_cache, installed by importing app). A reader
    never sees the file shorter than it is."""
    import threading
    import time

    from gradio import processing_utils as pu

    import app  # noqa: F401 -- installs the atomic writer

    image = Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = pu.save_pil_to_cache(image, str(tmp_path), format="png")
    size, stop, short = os.path.getsize(path), threading.Event(), []
    real_write = Path.write_bytes

    def slow_write(self: Path, data: bytes) -> int:  # a busy disk: the window a reader can fall into
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.002)
            f.write(data[len(data) // 2:])
        return len(data)

    monkeypatch.setattr(Path, "write_bytes", slow_write)

    def rewrite() -> None:
        while not stop.is_set():
            pu.save_pil_to_cache(image, str(tmp_path), format="png")

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            with open(path, "rb") as f:
                n = len(f.read())
            if n != size:
                short.append(n)
            time.sleep(0.0005)
    finally:
        stop.set()
        writer.join()
        monkeypatch.setattr(Path, "write_bytes", real_write)
    assert not short, f"{len(short)} of 300 reads saw a partial file"
    assert [p.name for p in Path(path).parent.iterdir()] == [Path(path).name], "no temporary file left"


def test_identical_concurrent_visitors_all_get_their_images(served) -> None:
    """Six visitors opening the page at once all see seed 0: the same five images, written and downloaded
    concurrently. Every call succeeds and every image arrives whole."""
    import threading

    errors: list[str] = []

    def visit(i: int) -> None:
        client = connect(served[0])
        for _ in range(4):
            try:
                outputs = client.predict(seed=0, c=0, api_name="/explore")
                assert all(_png(p).shape[0] == 32 for p in outputs[:5])  # the tiny model's native size
            except Exception as exc:  # noqa: BLE001 -- every failure counts
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    visitors = [threading.Thread(target=visit, args=(i,)) for i in range(6)]
    for v in visitors:
        v.start()
    for v in visitors:
        v.join(120)
    assert not errors, errors
