"""Line charts as PNG with Pillow alone (no plotting package to install), for README figures such as the
mean mask area over training of each ablation variant."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

# colour-blind-safe palette (Okabe-Ito), cycled
PALETTE = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (0, 0, 0), (240, 228, 66))


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike,
               title: str = "", xlabel: str = "", ylabel: str = "", y_range: tuple[float, float] | None = None,
               size: tuple[int, int] = (760, 420)) -> None:
    """One line per series (name -> (xs, ys)), a legend on the right, axes with 6 ticks each."""
    w, h = size
    left, right, top, bottom = 60, 170, 34, 46
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys]
    if not xs_all:
        raise ValueError("line_chart: every series is empty")
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = y_range if y_range is not None else (min(ys_all), max(ys_all))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    for t in _ticks(y0, y1):
        _, yy = px(x0, t)
        d.line([(left, yy), (w - right, yy)], fill=(230, 230, 230))
        d.text((left - 6, yy), f"{t:.2f}", fill="black", font=font, anchor="rm")
    for t in _ticks(x0, x1):
        xx, _ = px(t, y0)
        d.line([(xx, top), (xx, h - bottom)], fill=(240, 240, 240))
        d.text((xx, h - bottom + 6), f"{t:.0f}", fill="black", font=font, anchor="ma")
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [px(x, min(max(y, y0), y1)) for x, y in zip(xs, ys, strict=True)]
        if len(points) > 1:
            d.line(points, fill=colour, width=2)
        elif points:
            d.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        ly = top + 8 + 18 * i
        d.line([(w - right + 12, ly), (w - right + 36, ly)], fill=colour, width=3)
        d.text((w - right + 42, ly), name, fill="black", font=font, anchor="lm")
    d.text((w // 2, 10), title, fill="black", font=font, anchor="ma")
    d.text(((left + w - right) // 2, h - 16), xlabel, fill="black", font=font, anchor="ma")
    d.text((6, top - 14), ylabel, fill="black", font=font)
    img.save(path)
