"""The datasheet's charts: horizontal (stacked) bar charts drawn with Pillow into PNG files.

A datasheet carries four or five small charts of counts (binaries by
configuration, functions by source, binaries by licence, build outcomes, the
split's sides). They used to be drawn with matplotlib, whose import (numpy,
its font manager, its rc settings) and layout took 0.8 s of CPU per export,
more than writing the 721,001 ``lines`` rows of bench/export.py to Parquet;
Pillow draws the same bars, labels, ticks and legend in a few milliseconds
and is imported in 10 ms. Text is set in the font Pillow ships (Aileron, drawn
by FreeType; a bitmap font when Pillow was built without FreeType), not in a
font of the machine, so the same numbers give the same bytes wherever the
export runs (with the same Pillow). The PNG files carry no time or software
chunk for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

__all__ = ["bar_chart", "nice_ticks"]

WIDTH = 800
BAR = "#4477aa"
INK = "#222222"
FRAME = "#555555"
GRID = "#e4e4e4"


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: its bitmap font, one size
        return ImageFont.load_default()


def nice_ticks(top: int) -> tuple[int, list[int]]:
    """The axis end and integer ticks (steps of 1, 2 or 5 times a power of ten, at most 8 of them) for 0..top."""
    if top <= 0:
        return 1, [0, 1]
    step, scale = 1, 1
    while True:
        for m in (1, 2, 5):
            step = m * scale
            if -(-top // step) <= 7:
                end = -(-top // step) * step
                return end, list(range(0, end + 1, step))
        scale *= 10


def _width(draw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def bar_chart(
    path: Path,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    xlabel: str,
    colours: dict[str, str] | None = None,
) -> Path:
    """One chart: a row per label, the series stacked left to right, a legend when there are several."""
    from PIL import Image, ImageDraw

    colours = colours or {}
    labels = [lb if len(lb) < 48 else "…" + lb[-46:] for lb in labels]
    n = max(len(labels), 1)
    height = max(200, int(30 * n + 120))
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    f_title, f_label, f_small = _font(14), _font(11), _font(10)

    widest = max([_width(draw, lb, f_label) for lb in labels] + [20])
    x0 = min(int(WIDTH * 0.6), widest + 16)
    x1 = WIDTH - 24
    y0, y1 = 40, height - 50
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    end, ticks = nice_ticks(max(totals, default=0))

    def x_of(v: float) -> int:
        return x0 + round((x1 - x0) * v / end)

    draw.text(((x0 + x1) // 2, 20), title, fill=INK, font=f_title, anchor="mm")
    for t in ticks:  # grid, tick marks and their numbers
        x = x_of(t)
        draw.line([(x, y0 + 1), (x, y1 - 1)], fill=GRID)
        draw.line([(x, y1), (x, y1 + 4)], fill=FRAME)
        draw.text((x, y1 + 7), f"{t:,}", fill=INK, font=f_small, anchor="mt")
    draw.text(((x0 + x1) // 2, height - 10), xlabel, fill=INK, font=f_label, anchor="mb")
    row = (y1 - y0) / n
    for i, label in enumerate(labels):
        mid = y0 + row * (i + 0.5)
        top, bottom = round(mid - row * 0.4), round(mid + row * 0.4)
        left = 0
        for name, values in series:
            v = values[i]
            if v > 0:
                draw.rectangle(
                    [x_of(left), top, max(x_of(left + v) - 1, x_of(left)), bottom], fill=colours.get(name, BAR)
                )
            left += v
        draw.line([(x0 - 4, round(mid)), (x0, round(mid))], fill=FRAME)
        draw.text((x0 - 7, round(mid)), label, fill=INK, font=f_label, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline=FRAME)
    if len(series) > 1:  # the legend, top right inside the frame
        names = [name for name, _ in series]
        box_w = max(_width(draw, name, f_small) for name in names) + 30
        bx, by = x1 - box_w - 8, y0 + 8
        draw.rectangle([bx, by, bx + box_w, by + 16 * len(names) + 6], fill="white", outline=GRID)
        for k, name in enumerate(names):
            sy = by + 6 + 16 * k
            draw.rectangle([bx + 6, sy, bx + 16, sy + 10], fill=colours.get(name, BAR))
            draw.text((bx + 22, sy + 5), name, fill=INK, font=f_small, anchor="lm")
    img.save(path, format="PNG")
    return path
