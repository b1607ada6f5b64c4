"""The pseudo-segmentation dataset of section 3.4: pairs (x_i, pi_i) = (image, mask) drawn from G.

Two ways to get them: stream them (``synthesize``/``sample_pairs``: fresh codes every batch, nothing on
disk -- the fast default of the U-Net trainer), or write a fixed set to disk as PNG pairs
(``write_synthetic_dataset``) to inspect it or to train on exactly the same data again.

The masks stay *soft* (pi in [0, 1], an 8-bit PNG holds round(255 pi)) because eq. (10) is a BCE
against pi itself, not against a thresholded mask.

On disk (``out_dir``)::

    synthetic.json                       what was written: n, shard_size, seed, size, generator config
    00000/images/000000.png ...          RGB composite x_i
    00000/masks/000000.png ...           8-bit soft mask round(255 * pi_i)
    00000/COMPLETE                       written last: the shard is whole and is skipped on resume
    00001/...

Each shard draws its codes from its own seed (run seed, shard index), so a resumed run rewrites an
interrupted shard with exactly the data it would have had; every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .checkpoint import atomic_write_text
from .config import to_dict
from .nets.generator import LayeredGenerator

MANIFEST = "synthetic.json"
COMPLETE = "COMPLETE"


class Pairs(NamedTuple):
    images: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    masks: torch.Tensor  # [B, 1, H, W] soft, in [0, 1]


def sample_pairs(generator: LayeredGenerator, z: torch.Tensor, c: torch.Tensor) -> Pairs:
    """G(z, c) -> (image, mask) in eval mode, without autograd; restores G's previous mode.

    The outputs are cloned outside inference mode so that they can feed a network that *is* being
    trained (inference tensors may not be saved for backward).
    """
    was_training = generator.training
    generator.eval()  # BN running statistics: each sample independent of its batch
    try:
        with torch.inference_mode():
            layers = generator(z, c)
    finally:
        generator.train(was_training)
    return Pairs(layers.image.clone(), layers.mask.clone())


def synthesize(generator: LayeredGenerator, n: int, batch: int,
               generator_rng: torch.Generator | None = None) -> Iterator[Pairs]:
    """Stream n pairs from G in batches of at most `batch`; codes come from `generator_rng`.

    No grad mode is held across a ``yield`` (a context manager around a yield would leak into the
    caller's code), each batch is computed in its own inference-mode block.
    """
    if n < 0 or batch < 1:
        raise ValueError(f"need n >= 0 and batch >= 1, got n={n}, batch={batch}")
    device = next(generator.parameters()).device
    done = 0
    while done < n:
        b = min(batch, n - done)
        z, c = generator.sample_codes(b, generator_rng, device)
        yield sample_pairs(generator, z, c)
        done += b


# ---- on disk ----------------------------------------------------------------------------------------

def to_uint8_image(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def to_uint8_mask(masks: torch.Tensor) -> np.ndarray:
    """Soft [B, 1, H, W] in [0, 1] -> uint8 [B, H, W] = round(255 pi)."""
    return (masks.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 [H, W], [H, W, 3] or [H, W, 4] as PNG, atomically against a kill (temporary file +
    rename). No fsync per file: for many small files it costs more than the files; whoever needs a
    durable set (a shard's COMPLETE marker) syncs one marker after them."""
    path = Path(path)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def derived_seed(seed: int, stream: int) -> int:
    """A well-mixed 63-bit seed per (run seed, stream index): shards, training and validation draws
    get unrelated codes even for neighbouring seeds."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def shard_dir(out_dir: Path, shard: int) -> Path:
    return out_dir / f"{shard:05d}"


def _check_manifest(out_dir: Path, manifest: dict) -> None:
    path = out_dir / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old != manifest:
            diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            raise ValueError(f"{out_dir} already holds a synthetic dataset written with other settings "
                             f"({', '.join(diff)} differ); use another folder or delete it")
    else:
        atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True))


def write_synthetic_dataset(generator: LayeredGenerator, out_dir: str | os.PathLike, n: int,
                            shard_size: int = 1000, seed: int = 0, batch: int = 64,
                            progress: bool = False) -> int:
    """Write n (image, soft mask) PNG pairs under out_dir; skips shards already complete.

    Returns the number of pairs written by this call (0 when everything was already there).
    """
    if n < 1 or shard_size < 1:
        raise ValueError(f"need n >= 1 and shard_size >= 1, got n={n}, shard_size={shard_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, {"n": n, "shard_size": shard_size, "seed": seed, "size": generator.cfg.size,
                              "generator": to_dict(generator.cfg)})
    device = next(generator.parameters()).device
    n_shards = (n + shard_size - 1) // shard_size
    written = 0
    bar = tqdm(total=n, desc="synthesize", unit="img", disable=not progress)
    for shard in range(n_shards):
        start, stop = shard * shard_size, min(n, (shard + 1) * shard_size)
        folder = shard_dir(out_dir, shard)
        if (folder / COMPLETE).exists():
            bar.update(stop - start)
            continue
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        rng = torch.Generator().manual_seed(derived_seed(seed, shard))
        z, c = generator.sample_codes(stop - start, rng, device)  # the whole shard's codes, drawn once
        for i in range(0, stop - start, batch):
            pairs = sample_pairs(generator, z[i:i + batch], c[i:i + batch])
            for k, (img, mask) in enumerate(zip(to_uint8_image(pairs.images), to_uint8_mask(pairs.masks),
                                                strict=True)):
                name = f"{start + i + k:06d}.png"
                save_png(folder / "images" / name, img)
                save_png(folder / "masks" / name, mask)
            written += len(pairs.images)
            bar.update(len(pairs.images))
        atomic_write_text(folder / COMPLETE, json.dumps({"start": start, "stop": stop}))
    bar.close()
    return written


class PairFolder:
    """Random access to the pairs of a folder written by ``write_synthetic_dataset`` (complete shards only).

    Files are decoded on demand, so a large folder costs no memory.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not (self.root / MANIFEST).exists():
            raise FileNotFoundError(f"{self.root}: no {MANIFEST}; not a folder written by "
                                    "training/synthesize.py")
        self.pairs: list[tuple[Path, Path]] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not (folder / COMPLETE).exists():
                continue
            for img in sorted((folder / "images").glob("*.png")):
                self.pairs.append((img, folder / "masks" / img.name))
        if not self.pairs:
            raise FileNotFoundError(f"{self.root}: holds no complete shard of pairs")

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, indices: list[int] | torch.Tensor) -> Pairs:
        """Pairs at `indices`: images [B, 3, H, W] in [-1, 1], soft masks [B, 1, H, W] in [0, 1]."""
        imgs, masks = [], []
        for i in [int(i) for i in indices]:
            img_path, mask_path = self.pairs[i]
            with Image.open(img_path) as im:
                imgs.append(torch.from_numpy(np.array(im.convert("RGB"))))
            with Image.open(mask_path) as m:
                masks.append(torch.from_numpy(np.array(m.convert("L"))))
        images = torch.stack(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1  # [B, 3, H, W]
        return Pairs(images, torch.stack(masks)[:, None].float() / 255)
