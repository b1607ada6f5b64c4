"""Datasets of ELGAN Studio behind one entry point: ``load_dataset(spec, split, size)``.

A data spec names where the images come from, so every command takes one string flag:

* ``synthetic``    the embedded dataset (splits train / val / test, with masks), see ``synthetic.py``;
* ``cub:PATH``     CUB-200-2011, ReDO's split (``cub.py``);
* ``folder:PATH``  the user's own photos, with optional masks (``folder.py``);
* ``lsun:PATH``    an LSUN folder or LMDB export, with optional test masks (``lsun.py``).

Every split is returned whole as uint8 tensors at the working resolution, already through the
evaluation transform (shorter side -> size, centre crop): the datasets of this method are small, and a
tensor in memory keeps training loops free of decoding. Augmentation happens later, on the batch
(``augment.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import DataError, ImageSet, eval_transform, load_image, load_mask, mask_bool, to_rgb

__all__ = ["DataError", "ImageSet", "KINDS", "eval_transform", "load_dataset", "load_image", "load_mask",
           "mask_bool", "parse_spec", "to_rgb"]

KINDS = ("synthetic", "cub", "folder", "lsun")
SYNTHETIC_SPLITS = ("train", "val", "test")


def parse_spec(spec: str) -> tuple[str, str]:
    """"synthetic" -> ("synthetic", ""); "cub:PATH" / "folder:PATH" / "lsun:PATH" -> (kind, PATH)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data spec {spec!r}: expected synthetic, cub:PATH, folder:PATH or lsun:PATH")
    spec = spec.strip()
    kind, sep, path = spec.partition(":")
    kind = kind.lower()
    if kind == "synthetic":
        if sep and path.strip():
            raise DataError(f"data spec {spec!r}: 'synthetic' takes no path")
        return "synthetic", ""
    if sep and kind in KINDS:
        path = path.strip()
        if not path:
            raise DataError(f"data spec {spec!r} names no path: use {kind}:PATH")
        return kind, os.path.expanduser(path)
    hint = f" (did you mean folder:{spec}?)" if Path(spec).expanduser().is_dir() else ""
    raise DataError(f"unknown data spec {spec!r}: expected synthetic, cub:PATH, folder:PATH or "
                    f"lsun:PATH{hint}")


def load_dataset(spec: str, split: str, size: int, *, with_masks: bool = True, seed: int = 0,
                 limit: int | None = None, progress: bool = False) -> ImageSet:
    """Load one split of a dataset at `size` x `size` (uint8 images, masks in {0, 1} or None).

    `with_masks=False` skips the masks (GAN training never reads them); asking for masks a dataset does
    not have raises DataError. `limit` keeps the first `limit` items of the split in its sorted order.
    `seed` only matters for the synthetic dataset (real data splits are fixed by files or by sorting).
    """
    kind, path = parse_spec(spec)
    if not isinstance(size, int) or size < 1:
        raise DataError(f"size must be a positive int, got {size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive int or None, got {limit!r}")
    if kind == "synthetic":
        if split not in SYNTHETIC_SPLITS:
            raise DataError(f"synthetic split must be one of {SYNTHETIC_SPLITS}, got {split!r}")
        from .synthetic import load_synthetic  # lazy: a sibling module, imported only when used

        images, masks, _ = load_synthetic(split, size, seed=seed, n=limit, progress=progress)
        return ImageSet(images=images, masks=masks if with_masks else None, name=f"synthetic/{split}")
    if kind == "cub":
        from .cub import load_cub

        return load_cub(path, split, size, with_masks=with_masks, limit=limit, progress=progress)
    if kind == "folder":
        from .folder import load_folder

        return load_folder(path, split, size, with_masks=with_masks, limit=limit, progress=progress)
    from .lsun import load_lsun

    return load_lsun(path, split, size, with_masks=with_masks, limit=limit, progress=progress)
