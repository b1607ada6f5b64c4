"""LSUN (e.g. Car, as in IEM): a folder of images (recursive) or the official LMDB export.

``lsun:PATH`` is either ``PATH/data.mdb`` (LMDB: keys are image ids, values encoded images; read with the
optional ``lmdb`` package, read-only, without locks) or a folder of images searched recursively (as
written by LSUN's ``export`` script). Optional test masks live in ``PATH/masks/<key>.png`` (key = the LMDB
key, or the image path relative to PATH without extension).

Splits: LSUN comes as one collection, so "train" / "val" / "test" / "all" are the same images. With
masks asked for, the masked images ARE the evaluation set (IEM-style: a few annotated images of a huge
unlabelled collection); every mask must have its image. Without masks, every image, in key order. LSUN
is large: pass `limit` (the loader refuses a split that would not fit in memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import DataError, ImageSet, Item, index_by_stem, list_images, load_items, require_dir

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
