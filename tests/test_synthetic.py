"""The embedded synthetic dataset: determinism, disjoint splits, sane masks, resolution consistency, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from elgan.data import synthetic
from elgan.data.synthetic import (
    AREA_RANGE,
    DEFAULT_COUNTS,
    N_FAMILIES,
    N_PALETTES,
    SPLITS,
    generate_synthetic,
    load_synthetic,
    render_synthetic,
)


def test_api_constants() -> None:
    assert SPLITS == ("train", "val", "test")
    assert set(DEFAULT_COUNTS) == set(SPLITS)
    assert N_FAMILIES * N_PALETTES == 200  # GeneratorConfig's default n_categories, group_size = N_PALETTES


@pytest.mark.parametrize("size", [16, 32, 64])
def test_render_types(size: int) -> None:
    image, mask, cat = render_synthetic("train", 3, size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert mask.shape == (size, size) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    assert isinstance(cat, int) and 0 <= cat < N_FAMILIES * N_PALETTES


def test_deterministic_and_seeded() -> None:
    a = render_synthetic("val", 7, 32, seed=0)
    b = render_synthetic("val", 7, 32, seed=0)
    c = render_synthetic("val", 7, 32, seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])
    x, y, z = generate_synthetic("test", 32, seed=3, n=5)
    x2, y2, z2 = generate_synthetic("test", 32, seed=3, n=5)
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and np.array_equal(z, z2)


def test_splits_disjoint() -> None:
    train, _, _ = generate_synthetic("train", 16, n=300)
    test, _, _ = generate_synthetic("test", 16, n=300)
    val, _, _ = generate_synthetic("val", 16, n=50)
    seen = {im.tobytes() for im in train}
    assert len(seen) == 300  # no duplicate within a split either
    assert not any(im.tobytes() in seen for im in test)
    assert not any(im.tobytes() in seen for im in val)
    # Same index, different split: a different random stream, hence a different scene.
    for i in range(5):
        assert not np.array_equal(render_synthetic("train", i, 16)[0], render_synthetic("test", i, 16)[0])


def test_prefix_property() -> None:
    big = generate_synthetic("val", 16, n=6)
    small = generate_synthetic("val", 16, n=3)
    part = generate_synthetic("val", 16, n=3, start=3)
    assert np.array_equal(big[0][:3], small[0]) and np.array_equal(big[0][3:], part[0])


def test_masks_plausible() -> None:
    images, masks, cats = generate_synthetic("train", 32, n=120)
    area = masks.reshape(len(masks), -1).mean(1)
    lo, hi = AREA_RANGE
    assert area.min() > lo - 0.03 and area.max() < hi + 0.03, (area.min(), area.max())
    assert 0.2 < area.mean() < 0.33
    # Object inside the frame: (almost) nothing on the outermost pixel ring.
    ring = np.concatenate([masks[:, 0, 0], masks[:, 0, -1], masks[:, 0, :, 0], masks[:, 0, :, -1]], 1)
    assert ring.mean() < 0.005
    # Object pixels differ from the background: mean colour distance well above zero on average.
    m = masks[:, 0].astype(bool)
    x = images.transpose(0, 2, 3, 1).astype(np.float64)
    d = [np.abs(x[i][m[i]].mean(0) - x[i][~m[i]].mean(0)).sum() for i in range(len(x))]
    assert np.median(d) > 20
    # Categories cover many families and palettes.
    assert len(np.unique(cats // N_PALETTES)) >= 15 and len(np.unique(cats % N_PALETTES)) == N_PALETTES


def test_resolution_consistency() -> None:
    for i in range(12):
        m32 = render_synthetic("test", i, 32)[1].astype(bool)
        m64 = render_synthetic("test", i, 64)[1]
        down = m64.reshape(32, 2, 32, 2).mean((1, 3)) > 0.5
        iou = (m32 & down).sum() / (m32 | down).sum()
        assert iou > 0.8, (i, iou)
        im32 = render_synthetic("test", i, 32)[0].astype(np.float64)
        im64 = render_synthetic("test", i, 64)[0].astype(np.float64).reshape(32, 2, 32, 2, 3).mean((1, 3))
        assert np.abs(im32 - im64).mean() < 8


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        render_synthetic("training", 0, 32)
    with pytest.raises(ValueError, match="size"):
        render_synthetic("train", 0, 4)
    with pytest.raises(ValueError):
        render_synthetic("train", -1, 32)
    with pytest.raises(ValueError, match="n must be"):
        load_synthetic("train", 32, n=0)


def test_cache_round_trip(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ELGAN_DATA_DIR", str(tmp_path))
    images, masks, cats = load_synthetic("val", 16, seed=2, n=6)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.uint8
    assert masks.shape == (6, 1, 16, 16) and masks.dtype == torch.uint8
    assert cats.shape == (6,) and cats.dtype == torch.int64
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz") and "v" in files[0]

    def boom(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(synthetic, "generate_synthetic", boom)
    again = load_synthetic("val", 16, seed=2, n=6)
    assert all(torch.equal(a, b) for a, b in zip((images, masks, cats), again, strict=True))
    sliced = load_synthetic("val", 16, seed=2, n=4)  # served from the larger cached set
    assert torch.equal(sliced[0], images[:4])
    explicit = tmp_path / "other"
    monkeypatch.undo()
    monkeypatch.setitem(DEFAULT_COUNTS, "val", 3)
    d = load_synthetic("val", 16, seed=2, cache_dir=explicit)  # n=None -> DEFAULT_COUNTS
    assert len(d[0]) == 3 and torch.equal(d[0], images[:3])
    assert [p.suffix for p in explicit.iterdir()] == [".npz"]  # no temporary file left behind


def test_corrupt_cache_is_regenerated(tmp_path) -> None:
    path = synthetic.cache_path("val", 16, 0, 2, tmp_path)
    path.write_bytes(b"not a zip")
    images, _, _ = load_synthetic("val", 16, n=2, cache_dir=tmp_path)
    assert torch.equal(images, torch.from_numpy(generate_synthetic("val", 16, n=2)[0]))


def test_cli(tmp_path, capsys) -> None:
    from training.make_dataset import main

    grid = tmp_path / "g.png"
    assert main(["--size", "32", "--splits", "val", "--n", "4", "--out", str(tmp_path / "c"), "--grid",
                 str(grid), "--grid-n", "4", "--json", "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["splits"]["val"]["n"] == 4 and grid.exists()
    from PIL import Image

    assert Image.open(grid).size == (4 * 128, 2 * 128)
    for bad in (["--size", "48"], ["--splits", "all"], ["--grid", "x.jpg"], ["--seed", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main(bad)
        assert exc.value.code == 2


def test_workers_render_the_same_arrays() -> None:
    """Several processes split the indices; the arrays must be those of one process, in order."""
    one = generate_synthetic("val", 32, seed=3, n=7, start=2)
    many = generate_synthetic("val", 32, seed=3, n=7, start=2, workers=3)
    for a, b in zip(one, many, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
    with pytest.raises(ValueError, match="workers"):
        generate_synthetic("val", 32, n=2, workers=0)
