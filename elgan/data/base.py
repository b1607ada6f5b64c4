"""Shared pieces of the real-dataset loaders: the safe image reader, the evaluation transform and the
batch loader that every layout (CUB, folders, LSUN) feeds with a list of (image, mask) sources.

Why one reader: user data comes in every PIL mode (16-bit PNGs, palettes, CMYK JPEGs, phone photos with
EXIF rotation, transparent PNGs) and a wrong conversion fails silently (a white 16-bit image, a rotated
photo whose mask no longer lines up). Every file goes through :func:`load_image` / :func:`load_mask`, and
every failure becomes one :class:`DataError` that names the offending path.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps

# Refuse images above 50 megapixels: far beyond any dataset of this method, and PIL's own default only
# warns (a decompression bomb could exhaust memory). Set explicitly so the limit does not depend on PIL.
MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# A loaded split is one uint8 tensor; refuse one that would not fit comfortably in memory (pass `limit`).
MAX_TENSOR_BYTES = 8 * 1024**3
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
# The decoders PIL may use: those of IMAGE_EXTS (multi-picture phone JPEGs come in through "JPEG"). PIL
# would otherwise try every plugin it has on unknown bytes, including rarely used ones (EPS runs Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")

Source = str | os.PathLike | IO[bytes] | bytes


class DataError(ValueError):
    """A dataset or image cannot be used; the message names the offending path and what was expected."""


@dataclass
class ImageSet:
    """A loaded split: images uint8 [N, 3, H, W]; masks uint8 [N, 1, H, W] in {0, 1} (1 = fg) or None."""

    images: torch.Tensor
    masks: torch.Tensor | None
    name: str
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        im = self.images
        if im.dtype != torch.uint8 or im.dim() != 4 or im.shape[1] != 3:
            raise DataError(f"{self.name}: images must be uint8 [N, 3, H, W], "
                            f"got {im.dtype} {tuple(im.shape)}")
        if self.masks is not None:
            m = self.masks
            if m.dtype != torch.uint8 or tuple(m.shape) != (im.shape[0], 1, *im.shape[2:]):
                raise DataError(f"{self.name}: masks must be uint8 [N, 1, H, W] matching the images, "
                                f"got {m.dtype} {tuple(m.shape)}")
        if self.paths is not None and len(self.paths) != im.shape[0]:
            raise DataError(f"{self.name}: {len(self.paths)} paths for {im.shape[0]} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _label(source: Source, label: str | None) -> str:
    if label is not None:
        return label
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "<image bytes>")


def _open(source: Source, label: str | None = None, max_side: int | None = None) -> Image.Image:
    """Decode fully (verify first, then load), apply the EXIF orientation; any failure -> DataError.

    The pixel limit (and `max_side`, if given) is checked on the header, before any pixel is decoded.
    """
    name = _label(source, label)
    try:
        if isinstance(source, (str, os.PathLike)):
            data = Path(source).read_bytes()  # one read: no file handle stays open after decoding
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            data = source.read()
    except FileNotFoundError:
        raise DataError(f"image file not found: {name}") from None
    except OSError as e:
        raise DataError(f"cannot read {name}: {e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
                probe.verify()
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if img.width * img.height > MAX_PIXELS:
                raise DataError(f"{name}: {img.width}x{img.height} image is larger than "
                                f"{MAX_PIXELS / 1e6:.0f} megapixels; refused")
            if max_side is not None and max(img.size) > max_side:
                raise DataError(f"{name}: {img.width}x{img.height} image has a side longer than "
                                f"{max_side} px; refused")
            img.load()
    except DataError:
        raise
    except Image.UnidentifiedImageError:
        raise DataError(f"{name}: not an image, or not in a supported format "
                        f"({', '.join(IMAGE_FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{name}: image is larger than {MAX_PIXELS / 1e6:.0f} megapixels; refused") from None
    except Exception as e:  # PIL plugins raise many types (OSError, SyntaxError, struct.error, ...)
        raise DataError(f"cannot decode image {name}: {type(e).__name__}: {e}") from None
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # a corrupt EXIF block: keep the pixels as stored rather than refusing the image
        pass
    return img


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """Modes I;16*, I and F -> L, scaling to 8 bits (PIL's own convert clips 16-bit values to white)."""
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        a = a / 257.0
    elif img.mode == "F" and a.size and a.max() <= 1.0:
        a = a * 255.0
    elif img.mode == "I" and a.size and a.max() > 255:
        a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: transparency composited on white, 16-bit scaled down, CMYK/palette converted."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return _to_8bit_gray(img).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise DataError(f"cannot convert image mode {img.mode} to RGB: {e}") from None


def load_image(path: Source, label: str | None = None, max_side: int | None = None) -> Image.Image:
    """Read an image safely as RGB: verified, EXIF-rotated, any mode converted; DataError if unreadable.

    Refused before decoding: more than MAX_PIXELS pixels, or (when given) a side longer than `max_side`.
    """
    img = _open(path, label, max_side)
    try:
        return to_rgb(img)
    except DataError as e:
        raise DataError(f"{_label(path, label)}: {e}") from None


def load_mask(path: Source, label: str | None = None) -> Image.Image:
    """Read a mask safely, keeping its mode (the threshold depends on its range: see :func:`mask_bool`)."""
    return _open(path, label)


def mask_bool(img: Image.Image) -> np.ndarray:
    """Foreground of a mask image as bool [H, W]: first channel above half of its range.

    8-bit: > 127; 16-bit: > 32767; float: > 0.5 if values lie in [0, 1]. A mask whose values are all in
    {0, 1} is a label map and reads 1 = foreground (thresholding it at 127 would silently empty it).
    A palette mask with a grey palette uses the grey values, otherwise any non-zero index is foreground.
    """
    if img.mode == "1":
        return np.asarray(img).astype(bool)
    a = np.asarray(img)
    if img.mode in ("P", "PA"):
        idx = a[..., 0] if a.ndim == 3 else a
        pal = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        used = np.unique(idx)
        if len(pal) > used.max(initial=0) and (pal[used, 0] == pal[used, 1]).all() \
                and (pal[used, 1] == pal[used, 2]).all():
            return pal[idx, 0] > 127
        return idx > 0
    if a.ndim == 3:
        a = a[..., 0]
    mx = float(a.max()) if a.size else 0.0
    if mx <= 1.0:
        return a > 0.5
    if img.mode.startswith("I;16") or (img.mode in ("I", "F") and mx > 255):
        return a > 32767.5
    return a > 127.5


def eval_transform(img: Image.Image, size: int, is_mask: bool = False) -> torch.Tensor:
    """The evaluation protocol of ReDO / IEM / ELGAN: shorter side -> `size`, centre crop size x size.

    Images: bilinear (PIL's, antialiased when shrinking) -> uint8 [3, size, size]. Masks: thresholded at
    half of their range (see :func:`mask_bool`), NEAREST resize -> uint8 [1, size, size] in {0, 1}.
    Sizes and crop offsets follow torchvision's Resize(size) + CenterCrop(size) exactly, so numbers stay
    comparable with the published ones.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if is_mask:
        img = Image.fromarray(mask_bool(img).astype(np.uint8) * 255, "L")
        resample = Image.Resampling.NEAREST
    else:
        img = to_rgb(img)
        resample = Image.Resampling.BILINEAR
    w, h = img.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    a = np.asarray(img.crop((left, top, left + size, top + size)))
    if is_mask:
        return torch.from_numpy((a > 127).astype(np.uint8))[None]
    return torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def list_images(folder: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Image files under `folder` (recursive, hidden entries skipped), sorted by relative path."""
    excluded = {Path(p).resolve() for p in exclude}
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (Path(dirpath) / d).resolve() not in excluded)
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTS)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def index_by_stem(files: list[Path], folder: Path) -> dict[str, Path]:
    """Key each file by its path relative to `folder` without extension; two files per key -> DataError."""
    index: dict[str, Path] = {}
    for f in files:
        key = f.relative_to(folder).with_suffix("").as_posix()
        if key in index:
            raise DataError(f"two files with the same name stem {key!r}: {index[key]} and {f}")
        index[key] = f
    return index


def require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DataError(f"{what} is not a folder: {path}")
    return path


@dataclass(frozen=True)
class Item:
    """One sample to load: the image (a path, or encoded bytes from an LMDB) and its mask path if any."""

    label: str
    source: Path | bytes
    mask: Path | None = None


def _load_one(item: Item, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    src = item.source if isinstance(item.source, bytes) else Path(item.source)
    img = load_image(src, item.label)
    if item.mask is None:
        return eval_transform(img, size), None
    mask = load_mask(item.mask)
    if img.size != mask.size:
        # Same framing at another resolution is fine (the Weizmann originals); another aspect is not.
        ra, rb = img.width / img.height, mask.width / mask.height
        if abs(ra / rb - 1.0) > 0.03:
            raise DataError(f"image {item.label} ({img.width}x{img.height}) and its mask {item.mask} "
                            f"({mask.width}x{mask.height}) differ in aspect ratio: they cannot line up")
    return eval_transform(img, size), eval_transform(mask, size, is_mask=True)


def _chunks(items: Iterable[Item], n: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for it in items:
        chunk.append(it)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load_items(items: Iterable[Item], n: int, size: int, name: str, with_masks: bool,
               progress: bool = False, keep_paths: bool = True) -> ImageSet:
    """Decode `n` items into one ImageSet, a few threads at a time (PIL releases the GIL while decoding).

    `items` may be a lazy iterator (LMDB): it is consumed in chunks so encoded bytes never pile up.
    """
    if n <= 0:
        raise DataError(f"{name}: no images to load")
    need = n * (3 + int(with_masks)) * size * size
    if need > MAX_TENSOR_BYTES:
        raise DataError(f"{name}: {n} images at {size}px need {need / 1024**3:.1f} GiB; pass a smaller limit")
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(n, 1, size, size, dtype=torch.uint8) if with_masks else None
    paths: list[str] = []
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=n, desc=name, unit="img")
        except ImportError:
            bar = None
    workers = max(1, min(4, os.cpu_count() or 1))
    i = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk in _chunks(items, 64):
            if i + len(chunk) > n:
                raise DataError(f"{name}: more images than the {n} expected")
            for item, (img, mask) in zip(chunk, pool.map(lambda it: _load_one(it, size), chunk), strict=True):
                images[i] = img
                if masks is not None:
                    if mask is None:
                        raise DataError(f"{name}: no mask for {item.label}")
                    masks[i] = mask
                paths.append(item.label)
                i += 1
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if i != n:
        raise DataError(f"{name}: {i} images found, {n} expected")
    return ImageSet(images=images, masks=masks, name=name, paths=paths if keep_paths else None)
