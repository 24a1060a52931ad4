"""The Retrain tab's training curve as an inline SVG: loss and accuracy against the step.

Drawn here rather than with `gr.LinePlot` because the plot's axes cannot be told what these
series are: its y axis started at the smallest value (accuracy 1.0 sat on the bottom edge), and
a run of a few steps got ticks at steps 1.5, 2.5. Here the y axis starts at 0, x ticks fall on
whole steps, and each series gets a legend entry.
"""

from __future__ import annotations

import math

import pandas as pd

WIDTH, HEIGHT = 900, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 110, 14, 34
COLORS = {"loss": "#2563eb", "accuracy": "#16a34a"}


def step_ticks(last: int, most: int = 10) -> list[int]:
    """Whole steps from 1 to `last`, at most about `most` of them, at a round spacing (1, 2, 5, 10, ...)."""
    spacing = 1
    while last / spacing > most:
        spacing = next(s * 10 ** e for e in range(12) for s in (1, 2, 5) if s * 10 ** e > spacing)
    return [1, *range(spacing, last + 1, spacing)] if spacing > 1 else list(range(1, last + 1))


def value_ticks(top: float) -> list[float]:
    """0 to at least `top` in about 5 round steps."""
    raw = top / 5
    spacing = min((s * 10 ** math.floor(math.log10(raw)) for s in (1, 2, 2.5, 5, 10)),
                  key=lambda s: abs(top / s - 5))
    return [round(i * spacing, 10) for i in range(math.ceil(top / spacing - 1e-9) + 1)]


def training_curve_svg(curve: pd.DataFrame | None) -> str:
    """The curve (long format: step, value, metric) as SVG; a placeholder line when there is none yet."""
    if curve is None or curve.empty:
        return '<div class="wb-curve-empty">The loss and accuracy appear here once training logs its first step.</div>'
    last = max(int(curve["step"].max()), 2)
    top = max(1.0, float(curve["value"].max()))
    ticks = value_ticks(top)
    top = max(top, ticks[-1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(step):
        return LEFT + (step - 1) / (last - 1) * plot_w

    def y(value):
        return TOP + plot_h - value / top * plot_h

    parts = [f'<line x1="{LEFT}" y1="{y(0)}" x2="{LEFT + plot_w}" y2="{y(0)}" class="axis"/>']
    for v in ticks:
        parts.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + plot_w}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for s in step_ticks(last):
        parts.append(f'<text x="{x(s):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{s}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">step</text>')
    for n, (metric, rows) in enumerate(curve.groupby("metric", sort=False)):
        rows = rows.dropna(subset=["value"]).sort_values("step")
        color = COLORS.get(metric, "#9333ea")
        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(rows["step"], rows["value"]))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(rows) == 1:
            parts.append(f'<circle cx="{x(rows["step"].iloc[0]):.1f}" cy="{y(rows["value"].iloc[0]):.1f}" r="3" '
                         f'fill="{color}"/>')
        legend_y = TOP + 14 + 20 * n
        parts.append(f'<line x1="{WIDTH - RIGHT + 14}" y1="{legend_y - 4}" x2="{WIDTH - RIGHT + 34}" '
                     f'y2="{legend_y - 4}" stroke="{color}" stroke-width="3"/>'
                     f'<text x="{WIDTH - RIGHT + 40}" y="{legend_y}">{metric}</text>')
    return (f'<svg class="wb-curve" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="Training loss and accuracy">{"".join(parts)}</svg>')


CSS = """
.wb-curve {width: 100%; height: auto; max-height: 260px; font-size: 12px;}
.wb-curve text {fill: var(--body-text-color);}
.wb-curve .axis {stroke: var(--body-text-color-subdued);}
.wb-curve .grid {stroke: var(--border-color-primary); stroke-dasharray: 2 3;}
.wb-curve-empty {color: var(--body-text-color-subdued); padding: 12px 0;}
"""
