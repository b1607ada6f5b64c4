"""Hostile and odd uploads, through elgan.studio.segment and through the running app (issue 8).

Every file either segments correctly (right size, right orientation, right colours) or is refused with a
message that says why; after each refusal the app still serves a normal request. The app serves back only
what it generated: no path a client names, nothing from the repository or the checkpoints.

Decompression bombs are crafted as files whose header claims huge dimensions, with highly compressible
pixel data written row by row: nothing of their decoded size is ever allocated.
"""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from elgan.data import base as data_base
from elgan.studio import segment
from elgan.studio.registry import ModelRegistry
from tests.test_studio import write_tiny_bundle

# ---- crafted files ----------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int, height: int, pixels: bool = True) -> Path:
    """A valid 1-bit greyscale PNG of width x height, all black: ~110 KB on disk for 30000 x 30000
    (900 megapixels), compressed row by row so that the decoded image never exists anywhere."""
    parts = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))]
    if pixels:
        z, row, data = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8), []
        for _ in range(height):
            data.append(z.compress(row))
        data.append(z.flush())
        parts.append(_chunk(b"IDAT", b"".join(data)))
    path.write_bytes(b"".join(parts + [_chunk(b"IEND", b"")]))
    return path


def png16_rgb(path: Path, array: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), from a uint16 [H, W, 3] array."""
    h, w, _ = array.shape
    raw = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    return path


def jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A small JPEG whose frame header (SOF0) is edited to claim width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def photo(h: int = 60, w: int = 90, seed: int = 0) -> Image.Image:
    """Smooth colours (JPEG-friendly) with a red block in the stored top-left corner: shows rotations."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)
    a = np.clip(a.astype(int) + rng.integers(-8, 8, a.shape), 0, 255).astype(np.uint8)
    a[: h // 4, : w // 4] = (255, 0, 0)
    return Image.fromarray(a)


def encoded(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def text_bomb_png(path: Path) -> Path:
    """A small valid PNG carrying a zTXt chunk that inflates to 100 MB (PIL caps text chunks)."""
    good = encoded(photo(), "PNG")
    z = zlib.compressobj(9)
    blob = b"".join(z.compress(b"\0" * 1_000_000) for _ in range(100)) + z.flush()
    ztxt = _chunk(b"zTXt", b"Comment\0\0" + blob)
    path.write_bytes(good[:33] + ztxt + good[33:])  # right after IHDR (8-byte signature + 25-byte IHDR)
    return path


def animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def exif_jpeg(path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo().save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


# name -> (writer(tmp folder) -> path, what the refusal must say)
REFUSED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated PNG": (lambda d: _write(d / "t.png", encoded(photo(), "PNG")[:900]), "not a readable image"),
    "PNG cut after its header": (lambda d: _write(d / "h.png", encoded(photo(), "PNG")[:40]), "not a readable"),
    "truncated JPEG": (lambda d: _write(d / "t.jpg", encoded(photo(), "JPEG")[:700]), "truncated"),
    "text renamed .png": (lambda d: _write(d / "notes.png", b"just some text\n" * 40), "not an image"),
    "zero bytes": (lambda d: _write(d / "empty.png", b""), "is empty"),
    "random bytes": (lambda d: _write(d / "noise.jpg", np.random.default_rng(3).bytes(5000)), "not an image"),
    "EPS (a decoder that would run Ghostscript)": (
        lambda d: _write(d / "x.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        "supported format"),
    "PNG bomb 30000x30000": (lambda d: png_bomb(d / "bomb.png", 30000, 30000), "50 megapixels"),
    "PNG header claiming 30000x30000": (lambda d: png_bomb(d / "hdr.png", 30000, 30000, False), "50 megapixels"),
    "JPEG header claiming 65000x65000": (lambda d: jpeg_claiming(d / "big.jpg", 65000, 65000), "50 megapixels"),
    "strip 20000x2000 (40 MP, side too long)": (lambda d: png_bomb(d / "strip.png", 20000, 2000), "12000 px"),
    "side of 12001 px": (lambda d: png_bomb(d / "side.png", 12001, 1300), "12000 px"),
    "aspect 40:1": (lambda d: png_bomb(d / "thin.png", 800, 20), "aspect ratio"),
    "too small": (lambda d: png_bomb(d / "tiny.png", 5, 5), "at least 8 px"),
    "over the byte limit": (lambda d: _write(d / "big.png", b"\x89PNG\r\n\x1a\n" + bytes(segment.MAX_UPLOAD_BYTES)),
                            "the limit is 20 MB"),
    "zTXt chunk inflating to 100 MB": (lambda d: text_bomb_png(d / "ztxt.png"), "too large"),  # PIL stops early
}
# refused from the file's size or header alone: not one pixel is decoded
NOT_DECODED = {"zero bytes", "over the byte limit", "PNG bomb 30000x30000", "PNG header claiming 30000x30000",
               "JPEG header claiming 65000x65000", "strip 20000x2000 (40 MP, side too long)", "side of 12001 px",
               "zTXt chunk inflating to 100 MB"}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- the studio's functions -------------------------------------------------------------------------


def test_limits_are_set_explicitly() -> None:
    """The limits the README documents, and PIL's own bomb guard set to the same pixel count."""
    import app  # noqa: F401 -- gradio and the app are imported: neither may loosen PIL's limit

    assert data_base.MAX_PIXELS == segment.MAX_UPLOAD_PIXELS == 50_000_000
    assert Image.MAX_IMAGE_PIXELS == data_base.MAX_PIXELS
    assert segment.MAX_UPLOAD_SIDE == 12_000 and segment.MAX_UPLOAD_BYTES == 20 * 1024**2
    assert segment.MAX_ASPECT == 10 and segment.MIN_SIDE == 8 and segment.WORK_SIDE == 1024
    assert set(data_base.IMAGE_FORMATS) == {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"}


@pytest.mark.parametrize("case", list(REFUSED))
def test_hostile_file_is_refused_clearly(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make, says = REFUSED[case]
    path = make(tmp_path)
    decoded: list[Any] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    with pytest.raises(segment.UploadError, match=says) as refused:
        segment.read_upload(path, label=path.name)
    assert path.name in str(refused.value)
    if case in NOT_DECODED:
        assert not decoded, f"{case} was decoded ({decoded}) before it was refused"


def _grey16(path: Path) -> tuple[Path, np.ndarray]:
    values = (np.arange(60 * 90).reshape(60, 90) * 12 % 65536).astype(np.uint16)
    Image.fromarray(values).save(path)
    return path, np.rint(values / 257.0).astype(np.uint8)


def test_every_mode_reads_as_the_right_rgb(tmp_path: Path) -> None:
    rgb = photo()
    a = np.asarray(rgb)
    grey_path, grey_expected = _grey16(tmp_path / "grey16.png")
    assert Image.open(grey_path).mode.startswith("I;16")
    got = np.asarray(segment.read_upload(grey_path))
    assert np.array_equal(got, np.repeat(grey_expected[..., None], 3, -1))  # scaled, not clipped to white

    deep = a.astype(np.uint16) * 256 + np.random.default_rng(1).integers(0, 256, a.shape).astype(np.uint16)
    got = np.asarray(segment.read_upload(png16_rgb(tmp_path / "rgb16.png", deep)))
    assert np.abs(got.astype(int) - a).max() <= 1

    rgba = np.concatenate([a, np.full((60, 90, 1), 255, np.uint8)], -1)
    rgba[:, 45:, 3] = 0  # right half fully transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    got = np.asarray(segment.read_upload(tmp_path / "rgba.png"))
    assert np.array_equal(got[:, :45], a[:, :45]) and (got[:, 45:] == 255).all()

    pal = rgb.quantize(64)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    got = np.asarray(segment.read_upload(tmp_path / "pal.png"))
    expected = np.asarray(pal.convert("RGB"))
    opaque = np.asarray(pal) != 0
    assert np.array_equal(got[opaque], expected[opaque]) and (got[~opaque] == 255).all()

    rgb.convert("L").save(tmp_path / "grey.png")
    rgb.convert("LA").save(tmp_path / "grey-alpha.png")
    rgb.convert("1").save(tmp_path / "bilevel.png")
    Image.fromarray(np.asarray(rgb.convert("L")).astype(np.float32) / 255).save(tmp_path / "float.tiff")
    for name in ("grey.png", "grey-alpha.png", "float.tiff"):
        got = np.asarray(segment.read_upload(tmp_path / name))
        assert got.shape == (60, 90, 3) and np.abs(got[..., 0].astype(int) - np.asarray(rgb.convert("L"))).max() <= 1
    assert set(np.unique(np.asarray(segment.read_upload(tmp_path / "bilevel.png")))) <= {0, 255}

    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    got = np.asarray(segment.read_upload(tmp_path / "cmyk.jpg")).astype(int)
    assert np.abs(got - a).mean() < 6 and got[2, 2, 0] > 220 and got[2, 2, 1] < 40  # the red corner stays red

    for fmt, ext in (("BMP", "bmp"), ("WEBP", "webp"), ("PPM", "ppm"), ("TIFF", "tif")):
        got = np.asarray(segment.read_upload(_write(tmp_path / f"x.{ext}", encoded(rgb, fmt, lossless=True)
                                                    if fmt == "WEBP" else encoded(rgb, fmt))))
        assert np.array_equal(got, a), fmt


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    path = animated_gif(tmp_path / "anim.gif")
    assert getattr(Image.open(path), "n_frames", 1) == 3
    got = np.asarray(segment.read_upload(path))
    assert got.shape == (30, 40, 3) and (got == (255, 0, 0)).all()


@pytest.fixture(scope="module")
def model() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = write_tiny_bundle(Path(d) / "checkpoints" / "default.safetensors")
        yield ModelRegistry(Path(d) / "checkpoints", None).get(str(path.resolve()))


@pytest.mark.parametrize("orientation, transpose", [(6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90),
                                                    (3, Image.Transpose.ROTATE_180)])
def test_exif_rotation_and_the_mask_follow_the_display(model: Any, tmp_path: Path, orientation: int,
                                                       transpose: Image.Transpose) -> None:
    path = exif_jpeg(tmp_path / "phone.jpg", orientation)
    with Image.open(path) as raw:
        shown = raw.convert("RGB").transpose(transpose)  # what a viewer displays
    image = segment.read_upload(path)
    assert image.size == shown.size and np.array_equal(np.asarray(image), np.asarray(shown))
    seg = segment.segment(model, image, 0.5)
    h, w = shown.height, shown.width
    assert seg.probability.shape == (h, w) and seg.mask.shape == (h, w, 3) and seg.cutout.shape == (h, w, 4)
    assert np.array_equal(seg.cutout[..., :3], np.asarray(shown))  # the cut-out's pixels are the shown ones
    reference = segment.segment(model, shown, 0.5)  # the mask of the displayed picture, not of the stored one
    assert np.array_equal(seg.probability, reference.probability) and seg.probability.std() > 0
    assert np.asarray(image)[2, -3 if orientation == 6 else 2][0] > 200  # the red corner moved where it shows


def test_corrupt_exif_keeps_the_stored_pixels(tmp_path: Path) -> None:
    data = bytearray(encoded(photo(), "JPEG", quality=95, exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff\x01\x12"))
    path = _write(tmp_path / "bad-exif.jpg", bytes(data))
    image = segment.read_upload(path)
    assert image.size == (90, 60)


def test_segment_runs_on_every_accepted_kind(model: Any, tmp_path: Path) -> None:
    paths = [_grey16(tmp_path / "g16.png")[0], animated_gif(tmp_path / "a.gif"), exif_jpeg(tmp_path / "e.jpg", 6),
             png16_rgb(tmp_path / "c16.png", np.full((20, 30, 3), 40000, np.uint16))]
    for path in paths:
        image = segment.read_upload(path)
        seg = segment.segment(model, image, 0.5)
        assert seg.cutout.shape == (image.height, image.width, 4)
        assert segment.replace_background(model, image, seg.alpha, 1).shape == (image.height, image.width, 3)


# ---- through the running app ------------------------------------------------------------------------

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests._server import HTTP_S, connect, serve, wait_ready  # noqa: E402


def launch(root: Path, **build: Any) -> tuple[str, Any]:
    """The app on a tiny bundle in root/checkpoints, on a free port, in this process, once it answers."""
    return serve(root, **build)


def raw_call(base: str, api_name: str, data: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One event through Gradio's queue as a browser sends it (state slots included, None); returns the
    final message and every message before it (warnings arrive as "log" messages)."""
    import httpx

    config = wait_ready(base)
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    session = uuid.uuid4().hex
    messages = []
    with httpx.Client(base_url=base, timeout=HTTP_S) as http:
        http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session,
                                                  "event_data": None, "trigger_id": None}).raise_for_status()
        with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    messages.append(msg)
                    if msg.get("msg") == "process_completed":
                        return msg, messages
    raise AssertionError(f"no completion: {messages}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("hostile-app")
    write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    (root / "runs").mkdir()
    (root / "runs" / "secret.txt").write_text("run folder contents")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    url, demo = launch(root)
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
    mask, _, cutout, _, caption, _ = _segment(client, _write(tmp_path / "ok.png", encoded(photo(), "PNG")))
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
    too_big = _write(tmp_path / "huge.png", b"\x89PNG\r\n\x1a\n" + bytes(segment.MAX_UPLOAD_BYTES))
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
    grey_path, grey_expected = _grey16(tmp_path / "grey16.png")
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
    upload = _write(tmp_path / "mine.png", encoded(photo(), "PNG"))
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


def test_pixel_limit_holds_even_if_pil_is_loosened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header check is ours: another library setting PIL's limit to None does not open the door."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(segment.UploadError, match="50 megapixels"):
        segment.read_upload(png_bomb(tmp_path / "b.png", 30000, 30000))
    assert os.path.getsize(tmp_path / "b.png") < 200_000


# ---- concurrent visitors ----------------------------------------------------------------------------

def test_output_images_are_cached_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio names each output image by its bytes' hash; rewriting the same file while a browser reads it
    broke downloads (see elgan.studio.ui.install_atomic_image_cache, installed by importing app). A reader
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
