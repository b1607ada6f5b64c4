"""Real-dataset loading: spec parsing, CUB / folder / LSUN layouts, the safe reader, the eval transform.

Every fixture is a tiny tree drawn with PIL inside tmp_path; nothing under /work/shared is read.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elgan.data import DataError, ImageSet, eval_transform, load_dataset, load_image, parse_spec
from elgan.data import base as data_base

W, H = 48, 32  # every fixture image: landscape, so the centre crop cuts 8 px off each side at size 16


def _rect_image(path: Path, box: tuple[int, int, int, int], fmt: str | None = None) -> None:
    """A dark image with a red rectangle at box = (x0, y0, x1, y1)."""
    a = np.full((H, W, 3), 20, np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = (230, 30, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format=fmt)


def _rect_mask(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (W, H)) -> None:
    a = np.zeros((size[1], size[0]), np.uint8)
    sx, sy = size[0] / W, size[1] / H
    x0, y0, x1, y1 = box
    a[round(y0 * sy):round(y1 * sy), round(x0 * sx):round(x1 * sx)] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "L").save(path)


def _box(i: int) -> tuple[int, int, int, int]:
    return (8 + 2 * (i % 5), 4 + 2 * (i % 3), 28 + 2 * (i % 4), 24 + 2 * (i % 2))  # inside the crop


def _assert_aligned(s: ImageSet) -> None:
    """Mask 1 exactly where the image is red (away from the blurred rectangle edges)."""
    assert s.masks is not None
    red = s.images[:, 0].float()
    fg = s.masks[:, 0].bool()
    assert fg.any() and (~fg).any()
    assert red[fg].mean() > 180 and red[~fg].mean() < 80
    strong = red > 200
    assert (fg | ~strong).all()  # every clearly red pixel is foreground


def _cub_tree(root: Path, n: int = 12, split_codes: list[int] | None = None) -> Path:
    lines = []
    for i in range(1, n + 1):
        rel = f"{(i - 1) // 4 + 1:03d}.Class/bird_{i:02d}.jpg"
        lines.append(f"{i} {rel}")
        _rect_image(root / "images" / rel, _box(i))
        _rect_mask((root / "segmentations" / rel).with_suffix(".png"), _box(i))
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    if split_codes is not None:
        (root / "train_val_test_split.txt").write_text(
            "".join(f"{i} {c}\n" for i, c in enumerate(split_codes, 1)))
    return root


# ---------------------------------------------------------------- spec parsing

def test_parse_spec() -> None:
    assert parse_spec("synthetic") == ("synthetic", "")
    assert parse_spec("cub:/a/b") == ("cub", "/a/b")
    assert parse_spec("folder:rel/dir") == ("folder", "rel/dir")
    assert parse_spec("lsun:/x:y") == ("lsun", "/x:y")
    for bad in ("", "imagenet:/x", "cub:", "/some/path", "synthetic:/x"):
        with pytest.raises(DataError):
            parse_spec(bad)


def test_bad_arguments(tmp_path: Path) -> None:
    _cub_tree(tmp_path)
    with pytest.raises(DataError, match="split"):
        load_dataset(f"cub:{tmp_path}", "bogus", 16)
    with pytest.raises(DataError, match="limit"):
        load_dataset(f"cub:{tmp_path}", "train", 16, limit=0)
    with pytest.raises(DataError, match="split"):
        load_dataset("synthetic", "all", 16)


# ---------------------------------------------------------------- CUB

def test_cub_with_split_file(tmp_path: Path) -> None:
    _cub_tree(tmp_path, split_codes=[0] * 8 + [1, 1, 2, 2])
    sizes = {s: len(load_dataset(f"cub:{tmp_path}", s, 16)) for s in ("train", "val", "test", "all")}
    assert sizes == {"train": 8, "val": 2, "test": 2, "all": 12}
    test = load_dataset(f"cub:{tmp_path}", "test", 16)
    assert test.paths is not None and [Path(p).name for p in test.paths] == ["bird_11.jpg", "bird_12.jpg"]
    assert test.images.shape == (2, 3, 16, 16) and test.images.dtype == torch.uint8
    assert test.masks is not None and test.masks.shape == (2, 1, 16, 16)
    assert set(test.masks.unique().tolist()) <= {0, 1}
    assert test.name == f"cub:{tmp_path}/test"
    _assert_aligned(load_dataset(f"cub:{tmp_path}", "all", 16))
    assert load_dataset(f"cub:{tmp_path}", "train", 16, with_masks=False).masks is None
    assert len(load_dataset(f"cub:{tmp_path}", "train", 16, limit=3)) == 3


def test_cub_deterministic_split(tmp_path: Path) -> None:
    _cub_tree(tmp_path)
    sets = {s: load_dataset(f"cub:{tmp_path}", s, 16) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in sets.items()} == {"train": 10, "val": 1, "test": 1}
    names = [set(v.paths or []) for v in sets.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    again = load_dataset(f"cub:{tmp_path}", "test", 16)
    assert again.paths == sets["test"].paths


def test_cub_split_proportions() -> None:
    from elgan.data.cub import deterministic_split

    codes = deterministic_split(list(range(1, 11789)))
    counts = [sum(1 for c in codes.values() if c == k) for k in (0, 1, 2)]
    assert counts == [10000, 788, 1000]
    test_ids = sorted(i for i, c in codes.items() if c == 2)
    assert test_ids[0] < 30 and test_ids[-1] > 11760  # spread over every class, not one block


def test_cub_segmentations_next_to_root(tmp_path: Path) -> None:
    root = _cub_tree(tmp_path / "CUB_200_2011")
    (root / "segmentations").rename(tmp_path / "segmentations")
    _assert_aligned(load_dataset(f"cub:{root}", "all", 16))


def test_cub_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"cub:{tmp_path / 'nope'}", "test", 16)
    with pytest.raises(DataError, match="images.txt"):
        load_dataset(f"cub:{tmp_path}", "test", 16)
    root = _cub_tree(tmp_path / "cub", split_codes=[0] * 10 + [2, 2])
    mask = root / "segmentations" / "003.Class" / "bird_12.png"
    mask.unlink()
    with pytest.raises(DataError, match="bird_12.png"):
        load_dataset(f"cub:{root}", "test", 16)
    assert len(load_dataset(f"cub:{root}", "test", 16, with_masks=False)) == 2
    (root / "train_val_test_split.txt").write_text("1 0\n2 7\n")
    with pytest.raises(DataError, match="train_val_test_split"):
        load_dataset(f"cub:{root}", "train", 16)


# ---------------------------------------------------------------- folders

def test_folder_images_masks(tmp_path: Path) -> None:
    for i in range(5):
        _rect_image(tmp_path / "images" / f"im{i}.png", _box(i))
        _rect_mask(tmp_path / "masks" / f"im{i}.png", _box(i))
    s = load_dataset(f"folder:{tmp_path}", "test", 16)
    assert len(s) == 5 and s.name == f"folder:{tmp_path}"
    _assert_aligned(s)
    for split in ("train", "val", "all"):
        assert torch.equal(load_dataset(f"folder:{tmp_path}", split, 16).images, s.images)
    assert len(load_dataset(f"folder:{tmp_path}", "all", 16, limit=2)) == 2


def test_folder_weizmann_layout(tmp_path: Path) -> None:
    for i in range(4):  # photos at twice the mask resolution, same framing (as in the original database)
        a = np.full((2 * H, 2 * W, 3), 20, np.uint8)
        x0, y0, x1, y1 = _box(i)
        a[2 * y0:2 * y1, 2 * x0:2 * x1] = (230, 30, 30)
        (tmp_path / "rgb").mkdir(exist_ok=True)
        Image.fromarray(a).save(tmp_path / "rgb" / f"horse{i:03d}.jpg", quality=95)
        _rect_mask(tmp_path / "figure_ground" / f"horse{i:03d}.jpg", _box(i))
    _assert_aligned(load_dataset(f"folder:{tmp_path}", "test", 16))


def test_folder_plain(tmp_path: Path) -> None:
    for i in range(3):
        _rect_image(tmp_path / f"a{i}.png", _box(i))
    _rect_image(tmp_path / "sub" / "b.jpg", _box(3))
    (tmp_path / "notes.txt").write_text("not an image")
    s = load_dataset(f"folder:{tmp_path}", "train", 16, with_masks=False)
    assert len(s) == 4 and s.masks is None
    assert s.paths is not None and Path(s.paths[-1]).name == "b.jpg"
    with pytest.raises(DataError, match="no masks"):
        load_dataset(f"folder:{tmp_path}", "test", 16)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}", "all", 16, with_masks=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image"):
        load_dataset(f"folder:{tmp_path / 'empty'}", "all", 16, with_masks=False)

    root = tmp_path / "ds"
    for i in range(3):
        _rect_image(root / "images" / f"im{i}.png", _box(i))
        _rect_mask(root / "masks" / f"im{i}.png", _box(i))
    (root / "masks" / "im2.png").unlink()
    with pytest.raises(DataError, match="im2"):
        load_dataset(f"folder:{root}", "test", 16)
    assert len(load_dataset(f"folder:{root}", "train", 16, with_masks=False)) == 3
    _rect_mask(root / "masks" / "im2.png", _box(2))
    _rect_mask(root / "masks" / "stray.png", _box(2))
    with pytest.raises(DataError, match="stray"):
        load_dataset(f"folder:{root}", "test", 16)
    (root / "masks" / "stray.png").unlink()

    (root / "images" / "im1.png").write_text("I am a text file, not a PNG")
    with pytest.raises(DataError, match="im1.png"):
        load_dataset(f"folder:{root}", "test", 16)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(buf, "PNG")
    (root / "images" / "im1.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated
    with pytest.raises(DataError, match="im1.png"):
        load_dataset(f"folder:{root}", "test", 16)

    half = tmp_path / "half"
    _rect_mask(half / "masks" / "x.png", _box(0))
    with pytest.raises(DataError, match="images"):
        load_dataset(f"folder:{half}", "test", 16)


def test_mask_aspect_mismatch(tmp_path: Path) -> None:
    _rect_image(tmp_path / "images" / "a.png", _box(0))
    _rect_mask(tmp_path / "masks" / "a.png", _box(0), size=(W, W))
    with pytest.raises(DataError, match="aspect"):
        load_dataset(f"folder:{tmp_path}", "test", 16)


# ---------------------------------------------------------------- LSUN

def test_lsun_folder(tmp_path: Path) -> None:
    for i in range(4):
        _rect_image(tmp_path / "0" / f"k{i}.webp", _box(i), fmt="PNG")  # PIL sniffs content, not name
    _rect_mask(tmp_path / "masks" / "0" / "k1.png", _box(1))
    _rect_mask(tmp_path / "masks" / "0" / "k3.png", _box(3))
    s = load_dataset(f"lsun:{tmp_path}", "train", 16, with_masks=False, limit=3)
    assert len(s) == 3 and s.masks is None
    t = load_dataset(f"lsun:{tmp_path}", "test", 16)
    assert len(t) == 2 and t.paths is not None and Path(t.paths[0]).stem == "k1"
    _assert_aligned(t)


def test_lsun_lmdb(tmp_path: Path) -> None:
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(tmp_path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(5):
            _rect_image(tmp_path / "tmp.png", _box(i))
            txn.put(f"key{i}".encode(), (tmp_path / "tmp.png").read_bytes())
    env.close()
    (tmp_path / "tmp.png").unlink()
    s = load_dataset(f"lsun:{tmp_path}", "train", 16, with_masks=False, limit=3)
    assert len(s) == 3 and s.masks is None


def test_lsun_without_lmdb_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    (tmp_path / "data.mdb").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError
    with pytest.raises(DataError, match="lmdb"):
        load_dataset(f"lsun:{tmp_path}", "train", 16, with_masks=False)


# ---------------------------------------------------------------- eval transform

def test_eval_transform_matches_torchvision() -> None:
    tvf = pytest.importorskip("torchvision.transforms.functional")
    rng = np.random.default_rng(0)
    for w, h in ((37, 23), (23, 37), (40, 40), (9, 13)):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ref = tvf.pil_to_tensor(tvf.center_crop(tvf.resize(img, 16), 16))
        assert torch.equal(eval_transform(img, 16), ref)


def test_eval_transform_shorter_side_then_centre_crop() -> None:
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, 10:30] = 255  # a white band that is exactly the centre crop of the 20-px-high image
    out = eval_transform(Image.fromarray(a), 10)
    assert out.shape == (3, 10, 10) and out.dtype == torch.uint8
    assert (out[:, :, 1:-1] == 255).all()  # inner columns: only white (edges blur with the black)
    m = np.zeros((20, 40), np.uint8)
    m[:, 10:30] = 255
    mask = eval_transform(Image.fromarray(m, "L"), 10, is_mask=True)
    assert mask.shape == (1, 10, 10) and (mask == 1).all()
    tall = eval_transform(Image.fromarray(np.ascontiguousarray(m.T), "L"), 10, is_mask=True)
    assert (tall == 1).all()


def test_mask_threshold() -> None:
    def val(v: int, mode: str = "L") -> int:
        if mode == "I;16":
            img = Image.fromarray(np.full((4, 4), v, np.uint16))
        else:
            img = Image.new(mode, (4, 4), v)
        return int(eval_transform(img, 4, is_mask=True).max())

    assert val(128) == 1 and val(127) == 0 and val(255) == 1 and val(0) == 0
    assert val(32768, "I;16") == 1 and val(32767, "I;16") == 0
    assert val(1) == 1  # a {0, 1} label map reads 1 = foreground
    rgb = Image.new("RGB", (4, 4), (200, 0, 0))
    assert int(eval_transform(rgb, 4, is_mask=True).min()) == 1  # first channel decides


# ---------------------------------------------------------------- safe reader

def _px(path: Path) -> tuple[int, ...]:
    img = load_image(path)
    assert img.mode == "RGB"
    return img.getpixel((1, 1))


def test_load_image_modes(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((2, 2), (0, 0, 255, 255))
    rgba.save(tmp_path / "rgba.png")
    assert _px(tmp_path / "rgba.png") == (255, 255, 255)  # transparent -> white
    assert load_image(tmp_path / "rgba.png").getpixel((2, 2)) == (0, 0, 255)
    Image.new("L", (4, 4), 100).save(tmp_path / "l.png")
    assert _px(tmp_path / "l.png") == (100, 100, 100)
    Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    assert _px(tmp_path / "i16.png") == (100, 100, 100)  # scaled, not clipped to white
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.save(tmp_path / "p.png")
    assert _px(tmp_path / "p.png") == (10, 200, 30)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = _px(tmp_path / "cmyk.jpg")
    assert r > 200 and g < 50 and b < 50


def test_load_image_exif_rotation(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise for display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert Image.open(tmp_path / "rot.jpg").size == (40, 20)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_load_image_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match="text.png"):
        load_image(tmp_path / "text.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    monkeypatch.setattr(data_base, "MAX_PIXELS", 100)
    with pytest.raises(DataError, match="big.png"):
        load_image(tmp_path / "big.png")
