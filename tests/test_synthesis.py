"""Pseudo-segmentation pairs from G: the stream, and the PNG pairs on disk with resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elgan.config import GeneratorConfig
from elgan.nets.generator import LayeredGenerator
from elgan.synthesis import (
    COMPLETE,
    MANIFEST,
    PairFolder,
    derived_seed,
    sample_pairs,
    synthesize,
    write_synthetic_dataset,
)


@pytest.fixture(scope="module")
def generator() -> LayeredGenerator:
    torch.manual_seed(0)
    return LayeredGenerator(GeneratorConfig(size=32, width=4, n_categories=20, group_size=10))


def test_stream_shapes_ranges_and_count(generator: LayeredGenerator) -> None:
    batches = list(synthesize(generator, 10, 4, torch.Generator().manual_seed(0)))
    assert [len(b.images) for b in batches] == [4, 4, 2]
    for images, masks in batches:
        assert images.shape[1:] == (3, 32, 32) and masks.shape[1:] == (1, 32, 32)
        assert images.min() >= -1 and images.max() <= 1
        assert masks.min() >= 0 and masks.max() <= 1
        assert not images.requires_grad and not images.is_inference()  # usable as training inputs


def test_stream_is_seeded_and_leaves_modes_alone(generator: LayeredGenerator) -> None:
    generator.train()
    a = next(synthesize(generator, 3, 3, torch.Generator().manual_seed(5)))
    b = next(synthesize(generator, 3, 3, torch.Generator().manual_seed(5)))
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert generator.training  # eval only while sampling
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_pairs_are_the_generators_image_and_mask(generator: LayeredGenerator) -> None:
    z, c = generator.sample_codes(2, torch.Generator().manual_seed(1))
    pairs = sample_pairs(generator, z, c)
    generator.eval()
    with torch.no_grad():
        layers = generator(z, c)
    generator.train()
    assert torch.allclose(pairs.images, layers.image) and torch.allclose(pairs.masks, layers.mask)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_write_pairs_and_resume(generator: LayeredGenerator, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    assert write_synthetic_dataset(generator, out, 7, shard_size=3, seed=1, batch=2) == 7
    files = _files(out)
    assert len(files) == 14 and {p.split("/")[0] for p in files} == {"00000", "00001", "00002"}
    assert json.loads((out / MANIFEST).read_text())["n"] == 7
    img = np.asarray(Image.open(out / "00002/images/000006.png"))
    mask = np.asarray(Image.open(out / "00002/masks/000006.png"))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert mask.shape == (32, 32) and mask.dtype == np.uint8
    assert len(np.unique(mask)) > 2  # soft: round(255 * pi), not a thresholded mask

    # the mask PNG is round(255 * pi) of the very sample whose image sits beside it
    generator.eval()
    z, c = generator.sample_codes(3, torch.Generator().manual_seed(derived_seed(1, 0)))
    with torch.no_grad():
        pi = generator(z, c).mask
    generator.train()
    expect = (pi[1, 0] * 255).round().to(torch.uint8).numpy()
    assert np.abs(np.asarray(Image.open(out / "00000/masks/000001.png")).astype(int) - expect).max() <= 1

    # a complete run writes nothing; an interrupted shard is redone with the same data
    assert write_synthetic_dataset(generator, out, 7, shard_size=3, seed=1, batch=2) == 0
    (out / "00001" / COMPLETE).unlink()
    (out / "00001/images/000004.png").unlink()
    (out / "00001/masks/000003.png").write_bytes(b"half a file")
    assert write_synthetic_dataset(generator, out, 7, shard_size=3, seed=1, batch=2) == 3
    assert _files(out) == files


def test_write_refuses_other_settings(generator: LayeredGenerator, tmp_path: Path) -> None:
    write_synthetic_dataset(generator, tmp_path, 2, shard_size=2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        write_synthetic_dataset(generator, tmp_path, 2, shard_size=2, seed=1)


def test_pair_folder_reads_complete_shards_only(generator: LayeredGenerator, tmp_path: Path) -> None:
    write_synthetic_dataset(generator, tmp_path, 5, shard_size=2, seed=0)
    (tmp_path / "00002" / COMPLETE).unlink()
    folder = PairFolder(tmp_path)
    assert len(folder) == 4
    images, masks = folder.load([3, 0])
    assert images.shape == (2, 3, 32, 32) and masks.shape == (2, 1, 32, 32)
    assert images.min() >= -1 and images.max() <= 1 and masks.min() >= 0 and masks.max() <= 1
    with pytest.raises(FileNotFoundError):
        PairFolder(tmp_path / "nothing")


def test_synthesize_cli(generator: LayeredGenerator, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from elgan.bundle import save_model_bundle
    from elgan.config import PerturbConfig
    from training.synthesize import main

    ckpt = tmp_path / "gan.safetensors"
    save_model_bundle(ckpt, generator, None, PerturbConfig())
    args = ["--gan", str(ckpt), "--out", str(tmp_path / "pairs"), "--n", "5", "--shard-size", "2",
            "--no-progress"]
    assert main(args) == 0
    assert "5 pairs written" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 pairs written (5 already there)" in capsys.readouterr().out
    assert len(PairFolder(tmp_path / "pairs")) == 5
    assert main(["--gan", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x")]) == 2


def test_sample_grid_cli(tmp_path, capsys) -> None:
    from PIL import Image

    from tests.test_studio import write_tiny_bundle
    from training.sample_grid import main

    bundle = write_tiny_bundle(tmp_path / "b.safetensors")
    out = tmp_path / "grid.png"
    assert main(["--gan", str(bundle), "--out", str(out), "--n", "3", "--stats-n", "150"]) == 0
    # 4 rows (bg, fg, mask, image) x 3 tiles of 32 px, 2 px padding, enlarged 4x to ~128 px per tile
    assert Image.open(out).size == ((3 * 34 + 2) * 4, (4 * 34 + 2) * 4)
    text = capsys.readouterr().out
    assert "over 150 samples: mean area" in text
    first = out.read_bytes()
    assert main(["--gan", str(bundle), "--out", str(out), "--n", "3", "--stats-n", "0"]) == 0
    assert out.read_bytes() == first  # the same seed draws the same grid
    assert main(["--gan", str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2


def test_figures_cli(tmp_path, capsys) -> None:
    """Fig. 6's three grids and one Fig. 7 strip per direction; the same seed draws the same files;
    refusals and unreadable bundles exit 2 with one line."""
    from PIL import Image

    from tests.test_studio import write_tiny_bundle
    from training.figures import main

    bundle = write_tiny_bundle(tmp_path / "b.safetensors")
    out = tmp_path / "figs"
    assert main(["--gan", str(bundle), "--out", str(out), "--n", "3", "--frames", "5", "--c", "7"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["fig6_vary_c.png", "fig6_vary_csup.png", "fig6_vary_z.png", "fig7_rotation.png",
                     "fig7_scale.png", "fig7_tx.png", "fig7_ty.png"]
    assert Image.open(out / "fig6_vary_z.png").size == ((3 * 34 + 2) * 4, (4 * 34 + 2) * 4)  # 32 px tiles, 4x
    w, h = Image.open(out / "fig7_tx.png").size
    assert w == (5 * 34 + 2) * 4 and h == (2 * 34 + 2) * 4 + 6 * 4  # walk row, moved row, range bar
    first = (out / "fig7_scale.png").read_bytes()
    assert main(["--gan", str(bundle), "--out", str(out), "--n", "3", "--frames", "5", "--c", "7"]) == 0
    assert (out / "fig7_scale.png").read_bytes() == first
    assert "wrote fig6_vary_z.png" in capsys.readouterr().out
    assert main(["--gan", str(bundle), "--out", str(out), "--c", "100000"]) == 2
    assert main(["--gan", str(bundle), "--out", str(out), "--frames", "40"]) == 2
    assert main(["--gan", str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
