"""LSUN (e.g. Car, as in IEM): a folder of images (recursive) or the official LMDB export.

``lsun:PATH`` is either ``PATH/data.mdb`` (LMDB: keys are image ids, values encoded images; read with the
optional ``lmdb`` package, read-only, without locks) or a folder of images searched recursively (as
written by LSUN's ``export`` script). Optional test masks live in ``PATH/masks/<key>.png`` (key = the LMDB
key, or the image path relative to PATH without extension).

Splits: LSUN comes as one collection, so "train" / "val" / "test" / "all" are the same images. With
masks asked for, the masked images ARE the evaluation set (IEM-style: a few annotated images of a huge
unlabelled collection); every mask must have its image. Without masks, every image, in key order. LSUN
is large: pass `limit` (the loader refuses a split that would not fit in memory).

At scale (millions of images, several GPUs) the images are not loaded at all but streamed:
:class:`LmdbImages` is a torch Dataset over the LMDB export that decodes on demand, and
:func:`lsun_batches` feeds it through DataLoader workers, each rank reading its own part of every epoch
(DistributedSampler).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import (
    DataError,
    ImageSet,
    Item,
    eval_transform,
    index_by_stem,
    list_images,
    load_image,
    load_items,
    require_dir,
)

SPLITS = ("train", "val", "test", "all")


def _open_lmdb(root: Path) -> Any:
    try:
        import lmdb
    except ImportError:
        raise DataError(f"{root / 'data.mdb'} is an LMDB database but the 'lmdb' package is not installed "
                        f"(pip install lmdb), or export the images to a folder") from None
    try:
        return lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False, subdir=True)
    except lmdb.Error as e:
        raise DataError(f"cannot open LMDB {root}: {e}") from None


def _mask_index(root: Path, with_masks: bool) -> dict[str, Path]:
    if not with_masks:
        return {}
    mask_dir = root / "masks"
    if not mask_dir.is_dir():
        raise DataError(f"{root} has no masks (expected {mask_dir}/<key>.png); pass with_masks=False")
    masks = index_by_stem(list_images(mask_dir), mask_dir)
    if not masks:
        raise DataError(f"no mask images in {mask_dir}")
    return masks


def _lmdb_items(env: Any, root: Path, keys: list[str] | None, n: int,
                masks: dict[str, Path]) -> Iterator[Item]:
    """Items read lazily in key order (or for the given keys), so encoded bytes do not pile up."""
    with env.begin(buffers=False) as txn:
        if keys is not None:
            for k in keys:
                value = txn.get(k.encode())
                if value is None:
                    raise DataError(f"mask without image: {masks[k]} has no key {k!r} in {root / 'data.mdb'}")
                yield Item(label=f"{root / 'data.mdb'}:{k}", source=bytes(value), mask=masks.get(k))
            return
        cursor = txn.cursor()
        for count, (key, value) in enumerate(cursor):
            if count >= n:
                break
            yield Item(label=f"{root / 'data.mdb'}:{key.decode(errors='replace')}", source=bytes(value))


def load_lsun(root: str | Path, split: str, size: int, *, with_masks: bool = True, limit: int | None = None,
              progress: bool = False) -> ImageSet:
    """LSUN images (first `limit` in key / path order), with the masked subset if masks are asked for."""
    root = Path(root)
    if root.name == "data.mdb" and root.is_file():
        root = root.parent
    root = require_dir(root, "LSUN folder")
    if split not in SPLITS:
        raise DataError(f"LSUN split must be one of {SPLITS} (all mean the same images), got {split!r}")
    name = f"lsun:{root}"
    masks = _mask_index(root, with_masks)
    if (root / "data.mdb").is_file():
        env = _open_lmdb(root)
        try:
            keys = sorted(masks)[:limit] if with_masks else None
            n = len(keys) if keys is not None else int(env.stat()["entries"])
            if limit is not None:
                n = min(n, limit)
            if n == 0:
                raise DataError(f"LMDB {root / 'data.mdb'} holds no images")
            return load_items(_lmdb_items(env, root, keys, n, masks), n, size, name, with_masks, progress,
                              keep_paths=False)
        finally:
            env.close()
    images = index_by_stem(list_images(root, exclude=[root / "masks"]), root)
    if not images:
        raise DataError(f"no images (and no data.mdb) found in {root}")
    if with_masks:
        orphans = sorted(set(masks) - set(images))
        if orphans:
            raise DataError(f"mask without image: {masks[orphans[0]]} has no image {orphans[0]!r} in {root}")
        keys = sorted(masks)
    else:
        keys = sorted(images)
    if limit is not None:
        keys = keys[:limit]
    items = [Item(label=str(images[k]), source=images[k], mask=masks.get(k)) for k in keys]
    return load_items(items, len(items), size, name, with_masks, progress)


class LmdbImages(torch.utils.data.Dataset):
    """The images of an LSUN LMDB export, decoded on demand: uint8 [3, size, size] (evaluation transform).

    The keys are listed once, into one numpy array of fixed-width bytes: a Python list of millions of
    bytes objects would be copied page by page into every forked worker as reference counts change.
    The LMDB environment is opened lazily, read-only and lock-free, once per DataLoader worker, on its
    first item: an environment must not cross a fork, so the main process never keeps one open.
    """

    def __init__(self, root: str | Path, size: int, limit: int | None = None) -> None:
        root = Path(root)
        self.root = root.parent if root.name == "data.mdb" else root
        if not (self.root / "data.mdb").is_file():
            raise DataError(f"streaming needs an LMDB export: no data.mdb in {self.root}")
        self.size = size
        env = _open_lmdb(self.root)
        try:
            with env.begin() as txn:
                keys = []
                for key in txn.cursor().iternext(keys=True, values=False):
                    if limit is not None and len(keys) >= limit:
                        break
                    keys.append(bytes(key))
        finally:
            env.close()
        if not keys:
            raise DataError(f"LMDB {self.root / 'data.mdb'} holds no images")
        self.keys = np.array(keys, dtype=bytes)  # [N] fixed-width |S.. ; numpy strips trailing NULs
        self._env: Any = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        if torch.utils.data.get_worker_info() is None:
            # the main process keeps no environment open: forked workers would inherit it, and LMDB
            # (and py-lmdb's guard) forbid a second open of the same files in one process
            env = _open_lmdb(self.root)
            try:
                return self._read(env, i)
            finally:
                env.close()
        if self._env is None:  # first item in this worker: its own environment, kept while it lives
            self._env = _open_lmdb(self.root)
        return self._read(self._env, i)

    def _read(self, env: Any, i: int) -> torch.Tensor:
        key = bytes(self.keys[i])  # numpy drops the fixed-width NUL padding
        with env.begin(buffers=False) as txn:
            value = txn.get(key)
        if value is None:
            raise DataError(f"{self.root / 'data.mdb'}: key {key!r} vanished")
        return eval_transform(load_image(bytes(value), f"{self.root / 'data.mdb'}:{key.decode(errors='replace')}"),
                              self.size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_env": None}  # workers started by spawn open their own


def lsun_batches(images: torch.utils.data.Dataset, batch: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, workers: int = 4, cuda: bool = False,
                 start_epoch: int = 0) -> Iterator[torch.Tensor]:
    """Endless uint8 batches [batch, 3, S, S] of `images` for one rank: shuffled every epoch
    (DistributedSampler.set_epoch), each rank a disjoint share, decoded by `workers` processes.

    For a CUDA run: pinned memory, so the host-to-GPU copy runs asynchronously, and persistent workers,
    which keep their LMDB environments alive across epochs instead of restarting every epoch.
    """
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(images, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    if len(sampler) < batch:
        raise DataError(f"{len(images)} streamed images are too few for {world_size} x {batch} per step")
    loader = DataLoader(images, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=cuda, persistent_workers=workers > 0 and cuda)
    epoch = start_epoch
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
