"""A folder of the user's own photos (``folder:PATH``), in one of three layouts, tried in this order:

1. ``PATH/images/<stem>.*`` with optional ``PATH/masks/<stem>.*`` (usually .png; > half the range = fg,
   i.e. > 127 for 8-bit), same stem (a sub-folder path counts as part of the stem);
2. the original Weizmann Horse layout ``PATH/rgb/<stem>.*`` + ``PATH/figure_ground/<stem>.*`` (photo
   and mask may differ in resolution if they share the framing: each is transformed on its own);
3. a plain folder of images, searched recursively: no masks, GAN training only.

Splits: a folder has none. "train", "val", "test" and "all" all mean every image (sorted by relative
path). This is the unsupervised protocol: the GAN trains on the photos without ever reading a mask, and
the masks only score the segmenter on the same photos. Asking for masks where there are none, an image
without its mask, or a mask without its image raises DataError.
"""

from __future__ import annotations

from pathlib import Path

from .base import DataError, ImageSet, Item, index_by_stem, list_images, load_items, require_dir

SPLITS = ("train", "val", "test", "all")
LAYOUTS = (("images", "masks"), ("rgb", "figure_ground"))


def find_layout(root: Path) -> tuple[Path, Path | None]:
    """(image folder, mask folder or None) of a folder dataset; a half layout -> DataError."""
    for img_name, mask_name in LAYOUTS:
        if (root / img_name).is_dir():
            mask_dir = root / mask_name
            return root / img_name, (mask_dir if mask_dir.is_dir() else None)
    for img_name, mask_name in LAYOUTS:
        if (root / mask_name).is_dir():
            raise DataError(f"{root / mask_name} exists but {root / img_name} does not: expected "
                            f"{root / img_name}/<stem>.* next to {root / mask_name}/<stem>.png")
    return root, None


def pair_masks(images: dict[str, Path], mask_dir: Path) -> dict[str, Path]:
    """Mask of every image by stem; an image without mask or a mask without image -> DataError."""
    masks = index_by_stem(list_images(mask_dir), mask_dir)
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(f"mask without image: {masks[orphans[0]]} has no image of stem {orphans[0]!r}"
                        f" ({len(orphans)} such mask(s))")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(f"mask missing for image {images[missing[0]]}: expected {mask_dir / missing[0]}.png"
                        f" ({len(missing)} image(s) without mask)")
    return masks


def load_folder(root: str | Path, split: str, size: int, *, with_masks: bool = True,
                limit: int | None = None, progress: bool = False) -> ImageSet:
    """Every image of a folder dataset (sorted), with masks if asked; see the module doc for layouts."""
    root = require_dir(Path(root), "image folder")
    if split not in SPLITS:
        raise DataError(f"folder split must be one of {SPLITS} (all mean every image), got {split!r}")
    image_dir, mask_dir = find_layout(root)
    images = index_by_stem(list_images(image_dir), image_dir)
    if not images:
        raise DataError(f"no image files (.jpg, .png, .webp, ...) found in {image_dir}")
    masks: dict[str, Path] = {}
    if with_masks:
        if mask_dir is None:
            raise DataError(f"{root} has no masks (expected {root / 'masks'}/<stem>.png next to "
                            f"{root / 'images'}/, or rgb/ + figure_ground/); pass with_masks=False")
        masks = pair_masks(images, mask_dir)
    keys = sorted(images)
    if limit is not None:
        keys = keys[:limit]
    items = [Item(label=str(images[k]), source=images[k], mask=masks.get(k)) for k in keys]
    return load_items(items, len(items), size, f"folder:{root}", with_masks, progress)
