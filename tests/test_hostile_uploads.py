"""Hostile and odd uploads through studio.segment: every file either reads correctly (right size, right
orientation, right colours) or is refused with a message that says why, before anything large is decoded.
Through the running app: tests/test_hostile_app.py. The crafted files: tests/_uploads.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from elgan.data import base as data_base
from studio import segment
from studio.registry import ModelRegistry
from tests._uploads import (
    NOT_DECODED,
    REFUSED,
    animated_gif,
    encoded,
    exif_jpeg,
    grey16,
    photo,
    png16_rgb,
    png_bomb,
    write,
)
from tests.test_studio import write_tiny_bundle


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


def test_every_mode_reads_as_the_right_rgb(tmp_path: Path) -> None:
    rgb = photo()
    a = np.asarray(rgb)
    grey_path, grey_expected = grey16(tmp_path / "grey16.png")
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
        got = np.asarray(segment.read_upload(write(tmp_path / f"x.{ext}", encoded(rgb, fmt, lossless=True)
                                                    if fmt == "WEBP" else encoded(rgb, fmt))))
        assert np.array_equal(got, a), fmt


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    path = animated_gif(tmp_path / "anim.gif")
    assert getattr(Image.open(path), "n_frames", 1) == 3
    got = np.asarray(segment.read_upload(path))
    assert got.shape == (30, 40, 3) and (got == (255, 0, 0)).all()


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
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
    path = write(tmp_path / "bad-exif.jpg", bytes(data))
    image = segment.read_upload(path)
    assert image.size == (90, 60)


def test_segment_runs_on_every_accepted_kind(model: Any, tmp_path: Path) -> None:
    paths = [grey16(tmp_path / "g16.png")[0], animated_gif(tmp_path / "a.gif"), exif_jpeg(tmp_path / "e.jpg", 6),
             png16_rgb(tmp_path / "c16.png", np.full((20, 30, 3), 40000, np.uint16))]
    for path in paths:
        image = segment.read_upload(path)
        seg = segment.segment(model, image, 0.5)
        assert seg.cutout.shape == (image.height, image.width, 4)
        assert segment.replace_background(model, image, seg.alpha, 1).shape == (image.height, image.width, 3)


def test_pixel_limit_holds_even_if_pil_is_loosened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header check is ours: another library setting PIL's limit to None does not open the door."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(segment.UploadError, match="50 megapixels"):
        segment.read_upload(png_bomb(tmp_path / "b.png", 30000, 30000))
    assert os.path.getsize(tmp_path / "b.png") < 200_000
