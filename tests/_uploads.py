"""Crafted upload files for the hostile-upload tests: odd but valid images, and files that must be refused.

Decompression bombs are crafted as files whose header claims huge dimensions, with highly compressible
pixel data written row by row: nothing of their decoded size is ever allocated.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio import segment


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
    "truncated PNG": (lambda d: write(d / "t.png", encoded(photo(), "PNG")[:900]), "not a readable image"),
    "PNG cut after its header": (lambda d: write(d / "h.png", encoded(photo(), "PNG")[:40]), "not a readable"),
    "truncated JPEG": (lambda d: write(d / "t.jpg", encoded(photo(), "JPEG")[:700]), "truncated"),
    "text renamed .png": (lambda d: write(d / "notes.png", b"just some text\n" * 40), "not an image"),
    "zero bytes": (lambda d: write(d / "empty.png", b""), "is empty"),
    "random bytes": (lambda d: write(d / "noise.jpg", np.random.default_rng(3).bytes(5000)), "not an image"),
    "EPS (a decoder that would run Ghostscript)": (
        lambda d: write(d / "x.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        "supported format"),
    "PNG bomb 30000x30000": (lambda d: png_bomb(d / "bomb.png", 30000, 30000), "50 megapixels"),
    "PNG header claiming 30000x30000": (lambda d: png_bomb(d / "hdr.png", 30000, 30000, False), "50 megapixels"),
    "JPEG header claiming 65000x65000": (lambda d: jpeg_claiming(d / "big.jpg", 65000, 65000), "50 megapixels"),
    "strip 20000x2000 (40 MP, side too long)": (lambda d: png_bomb(d / "strip.png", 20000, 2000), "12000 px"),
    "side of 12001 px": (lambda d: png_bomb(d / "side.png", 12001, 1300), "12000 px"),
    "aspect 40:1": (lambda d: png_bomb(d / "thin.png", 800, 20), "aspect ratio"),
    "too small": (lambda d: png_bomb(d / "tiny.png", 5, 5), "at least 8 px"),
    "over the byte limit": (lambda d: write(d / "big.png", b"\x89PNG\r\n\x1a\n" + bytes(segment.MAX_UPLOAD_BYTES)),
                            "the limit is 20 MB"),
    "zTXt chunk inflating to 100 MB": (lambda d: text_bomb_png(d / "ztxt.png"), "too large"),  # PIL stops early
}
# refused from the file's size or header alone: not one pixel is decoded
NOT_DECODED = {"zero bytes", "over the byte limit", "PNG bomb 30000x30000", "PNG header claiming 30000x30000",
               "JPEG header claiming 65000x65000", "strip 20000x2000 (40 MP, side too long)", "side of 12001 px",
               "zTXt chunk inflating to 100 MB"}


def write(path: Path, data: bytes) -> Path:
    """`data` as the file `path` (returned)."""
    path.write_bytes(data)
    return path


def grey16(path: Path) -> tuple[Path, np.ndarray]:
    """A 16-bit greyscale PNG, and the 8-bit values it must read as (scaled, not clipped)."""
    values = (np.arange(60 * 90).reshape(60, 90) * 12 % 65536).astype(np.uint16)
    Image.fromarray(values).save(path)
    return path, np.rint(values / 257.0).astype(np.uint8)
