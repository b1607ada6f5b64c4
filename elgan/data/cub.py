"""CUB-200-2011 in its standard layout, with the split of ReDO (the one every published number uses).

Layout of ``cub:PATH``::

    PATH/images.txt                  "<id> <relpath>" per line (CUB's own file)
    PATH/images/<relpath>            the photos (.jpg)
    PATH/segmentations/<relpath>.png the segmentation masks (first channel / L, > half its range = bird);
                                     PATH/../segmentations is accepted too (the separate CUB archive
                                     unpacks next to CUB_200_2011/)
    PATH/train_val_test_split.txt    optional, ReDO's "<id> <0|1|2>": 0 train (10,000), 1 val (788),
                                     2 test (1,000). CUB's own train_test_split.txt is a different split
                                     and is not used.

Without the ReDO file the split is deterministic and documented, with the same proportions: images are
sorted by id (CUB ids run class by class) and the test images are the evenly spaced positions
``i`` with ``floor(i * n_test / N) != floor((i + 1) * n_test / N)``, ``n_test = round(N * 1000 / 11788)``;
the validation images are picked the same way among the rest (``n_val = round(N * 788 / 11788)``); the
others are training images. Even spacing over a class-ordered list spreads every split across the
classes, which a hash or a contiguous block would not guarantee. Numbers obtained with it are NOT
comparable with the literature's: use ReDO's file for those.
"""

from __future__ import annotations

from pathlib import Path

from .base import DataError, ImageSet, Item, load_items, require_dir

SPLITS = ("train", "val", "test", "all")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
REDO_SIZES = {"train": 10000, "val": 788, "test": 1000}
SPLIT_FILE = "train_val_test_split.txt"


def _read_pairs(path: Path, what: str) -> list[tuple[int, str]]:
    """Lines "<int id> <value>" of a CUB metadata file; a malformed line -> DataError naming path:line."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{lineno}: expected '<id> <value>', got {line.strip()!r}")
        pairs.append((int(parts[0]), parts[1].strip()))
    if not pairs:
        raise DataError(f"{what} is empty: {path}")
    return pairs


def _even_pick(n_items: int, k: int) -> list[bool]:
    """Evenly spaced selection of exactly k of n_items positions (Bresenham-like, deterministic)."""
    return [(i * k) // n_items != ((i + 1) * k) // n_items for i in range(n_items)]


def deterministic_split(ids: list[int]) -> dict[int, int]:
    """The documented fallback split: id -> 0 train / 1 val / 2 test, ReDO's proportions (module doc)."""
    ids = sorted(ids)
    n = len(ids)
    total = sum(REDO_SIZES.values())
    n_test = round(n * REDO_SIZES["test"] / total)
    n_val = round(n * REDO_SIZES["val"] / total)
    codes: dict[int, int] = {}
    rest = []
    for i, picked in zip(ids, _even_pick(n, n_test), strict=True):
        if picked:
            codes[i] = 2
        else:
            rest.append(i)
    for i, picked in zip(rest, _even_pick(len(rest), n_val), strict=True):
        codes[i] = 1 if picked else 0
    return codes


def _split_codes(root: Path, ids: list[int]) -> dict[int, int]:
    split_file = root / SPLIT_FILE
    if not split_file.exists():
        return deterministic_split(ids)
    codes: dict[int, int] = {}
    for i, value in _read_pairs(split_file, "split file"):
        if value not in ("0", "1", "2"):
            raise DataError(f"{split_file}: image {i} has split {value!r}; expected 0, 1 or 2")
        codes[i] = int(value)
    missing = [i for i in ids if i not in codes]
    if missing:
        raise DataError(f"{split_file} has no split for {len(missing)} image id(s) of images.txt "
                        f"(first: {missing[0]})")
    return codes


def _segmentation_dir(root: Path) -> Path:
    for cand in (root / "segmentations", root.parent / "segmentations"):
        if cand.is_dir():
            return cand
    raise DataError(f"CUB segmentation folder not found: {root / 'segmentations'} "
                    f"(nor {root.parent / 'segmentations'}); pass with_masks=False to load images only")


def load_cub(root: str | Path, split: str, size: int, *, with_masks: bool = True, limit: int | None = None,
             progress: bool = False) -> ImageSet:
    """One split of CUB (train / val / test, or all), images sorted by id, at `size` (eval transform)."""
    root = require_dir(Path(root), "CUB folder")
    if split not in SPLITS:
        raise DataError(f"CUB split must be one of {SPLITS}, got {split!r}")
    entries = _read_pairs(root / "images.txt", "CUB images.txt")
    ids = [i for i, _ in entries]
    if len(set(ids)) != len(ids):
        raise DataError(f"{root / 'images.txt'} lists an image id twice")
    codes = _split_codes(root, ids)
    chosen = sorted((i, rel) for i, rel in entries if split == "all" or codes[i] == SPLIT_CODES[split])
    if limit is not None:
        chosen = chosen[:limit]
    name = f"cub:{root}/{split}"
    if not chosen:
        raise DataError(f"{name}: the split has no images")
    image_dir = require_dir(root / "images", "CUB image folder")
    seg_dir = _segmentation_dir(root) if with_masks else None
    items = []
    for _, rel in chosen:
        img = image_dir / rel
        if not img.is_file():
            raise DataError(f"image listed in {root / 'images.txt'} not found: {img}")
        mask = None
        if seg_dir is not None:
            mask = (seg_dir / rel).with_suffix(".png")
            if not mask.is_file():
                raise DataError(f"segmentation mask not found for {img}: expected {mask}")
        items.append(Item(label=str(img), source=img, mask=mask))
    return load_items(items, len(items), size, name, with_masks, progress)
