"""Foreground/background segmentation metrics: ACC, foreground IoU and mIoU.

Two conventions exist in the unsupervised-segmentation literature and numbers from the two are not
comparable, so both are offered and every report names the one it used:

* ``dataset`` (default; ILSGAN, the ELGAN authors' own later code): one fg/bg confusion matrix is
  accumulated over *all* test pixels; ACC = correct / all, IoU = foreground IoU, mIoU = mean of the
  foreground and background IoUs.
* ``per_image`` (ReDO, IEM, Voynov et al.): the three numbers are computed per image and averaged.
  An image with no foreground in both prediction and truth has IoU 1 (nothing to miss).

No polarity flip: the layered model knows which layer is the foreground.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CONVENTIONS = ("dataset", "per_image")


@dataclass(frozen=True)
class SegmentationScores:
    acc: float  # per-pixel accuracy
    iou: float  # foreground IoU
    miou: float  # mean of foreground and background IoU
    n: int  # number of images
    convention: str  # "dataset" or "per_image"

    def as_dict(self) -> dict[str, float | int | str]:
        return {"acc": self.acc, "iou": self.iou, "miou": self.miou, "n": self.n,
                "convention": self.convention}


def _as_bool(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """[N, H, W] or [N, 1, H, W] masks (bool, or probabilities thresholded at `threshold`) -> bool [N, H*W]."""
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"masks must have one channel, got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"masks must be [N, H, W] or [N, 1, H, W], got shape {tuple(x.shape)}")
    b = x if x.dtype == torch.bool else x > threshold
    return b.reshape(b.shape[0], -1)


def confusion(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image counts [N, 4] = (tp, fp, fn, tn) of foreground; pred and target thresholded at 0.5."""
    p, t = _as_bool(pred, threshold), _as_bool(target, threshold)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and truth {tuple(t.shape)} differ in shape")
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    tn = (~p & ~t).sum(1)
    return torch.stack([tp, fp, fn, tn], 1).to(torch.float64)


def scores_from_confusion(counts: torch.Tensor, convention: str = "dataset") -> SegmentationScores:
    """ACC / IoU / mIoU from per-image (tp, fp, fn, tn) counts [N, 4]."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if counts.numel() == 0:
        raise ValueError("no images to score")
    n = counts.shape[0]
    c = counts.sum(0, keepdim=True) if convention == "dataset" else counts
    tp, fp, fn, tn = c.unbind(1)
    total = tp + fp + fn + tn
    acc = (tp + tn) / total
    fg_union, bg_union = tp + fp + fn, tn + fp + fn
    iou_fg = torch.where(fg_union > 0, tp / fg_union.clamp_min(1), torch.ones_like(tp))
    iou_bg = torch.where(bg_union > 0, tn / bg_union.clamp_min(1), torch.ones_like(tn))
    return SegmentationScores(acc=float(acc.mean()), iou=float(iou_fg.mean()),
                              miou=float(((iou_fg + iou_bg) / 2).mean()), n=n, convention=convention)


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, convention: str = "dataset",
                        threshold: float = 0.5) -> SegmentationScores:
    """Scores of predicted masks against truth; both [N, H, W] / [N, 1, H, W], probabilities or bool."""
    return scores_from_confusion(confusion(pred, target, threshold), convention)


class ScoreAccumulator:
    """Accumulates per-image confusion counts batch by batch, so a large test set needs no memory."""

    def __init__(self) -> None:
        self._counts: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> None:
        self._counts.append(confusion(pred.detach().cpu(), target.detach().cpu(), threshold))

    @property
    def counts(self) -> torch.Tensor:
        return torch.cat(self._counts) if self._counts else torch.zeros(0, 4, dtype=torch.float64)

    def result(self, convention: str = "dataset") -> SegmentationScores:
        return scores_from_confusion(self.counts, convention)

    def per_image_iou(self) -> torch.Tensor:
        tp, fp, fn, _ = self.counts.unbind(1)
        union = tp + fp + fn
        return torch.where(union > 0, tp / union.clamp_min(1), torch.ones_like(tp))


def mask_areas(counts: torch.Tensor) -> torch.Tensor:
    """Predicted and true foreground area of each image, as shares of its pixels: [N, 4] counts -> [N, 2]."""
    tp, fp, fn, _ = counts.unbind(1)
    pixels = counts.sum(1).clamp_min(1)
    return torch.stack([(tp + fp) / pixels, (tp + fn) / pixels], 1)


def error_shares(counts: torch.Tensor) -> dict[str, float]:
    """Which way a segmenter errs, dataset-level, from per-image (tp, fp, fn, tn) counts [N, 4]: the
    predicted and the true foreground area (shares of all pixels), the false foreground and the missed
    foreground (both as shares of the true foreground). IoU alone does not say whether masks are too big
    (background taken for the object) or too small; these do."""
    total = counts.sum(0, keepdim=True)  # [1, 4]: the dataset as one image
    pred_area, true_area = mask_areas(total)[0].tolist()
    tp, fp, fn, _ = total[0].tolist()
    true_fg = max(tp + fn, 1.0)
    return {"pred_area": pred_area, "true_area": true_area, "false_fg": fp / true_fg, "missed_fg": fn / true_fg}


def top1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Share of rows whose arg-max is the target: how well a recovery head names its code."""
    return float((logits.detach().argmax(1) == target).float().mean())
