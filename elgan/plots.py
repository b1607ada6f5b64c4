"""Line charts as PNG with matplotlib (its Agg renderer: no display needed), for README figures such as the
mean mask area over training of each ablation variant."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

# colour-blind-safe palette (Okabe-Ito), cycled
PALETTE = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (0, 0, 0), (240, 228, 66))
DPI = 100  # `size` is in pixels: the figure is size / DPI inches


def _colour(i: int) -> tuple[float, float, float]:
    r, g, b = PALETTE[i % len(PALETTE)]
    return r / 255, g / 255, b / 255


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike,
               title: str = "", xlabel: str = "", ylabel: str = "", y_range: tuple[float, float] | None = None,
               size: tuple[int, int] = (760, 420)) -> None:
    """One line per series (name -> (xs, ys)), a legend on the right; an RGB image of `size` pixels at `path`
    (PNG for a .png path: the format follows the suffix).

    A series of one point is drawn as a dot; with `y_range` the y axis is fixed to it (lines leaving the
    range are cut at its edge). Raises ValueError when every series is empty or xs and ys differ in length.
    """
    points = {name: (list(xs), list(ys)) for name, (xs, ys) in series.items()}
    for name, (xs, ys) in points.items():
        if len(xs) != len(ys):
            raise ValueError(f"line_chart: series {name!r} has {len(xs)} x values and {len(ys)} y values")
    if not any(xs for xs, _ in points.values()):
        raise ValueError("line_chart: every series is empty")
    w, h = size
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI, facecolor="white", layout="constrained")
    canvas = FigureCanvasAgg(fig)  # render with Agg whatever matplotlib's configured backend is
    ax = fig.add_subplot()
    for i, (name, (xs, ys)) in enumerate(points.items()):
        ax.plot(xs, ys, color=_colour(i), linewidth=2, label=name, marker="o" if len(xs) == 1 else None,
                markersize=4)
    if y_range is not None:
        ax.set_ylim(*y_range)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.grid(True, color=(0.9, 0.9, 0.9), linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.legend(loc="outside right upper", frameon=False, fontsize=9)
    canvas.draw()
    Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(path)  # RGB; format from the suffix
