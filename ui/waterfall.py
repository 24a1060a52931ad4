"""The Curate tab's why-dropped waterfall as an inline SVG: the store's pairs, then one bar per filter
step with the pairs it removed, down to the pairs the export writes.

The numbers are the export manifest's `why_dropped` (`workbench.curate.explain.why_dropped` runs the
same `waterfall` the export does); this module only draws them. Drawn by hand, like `ui.curve`, so
each removed chunk floats at the height it was cut from (a plain bar plot cannot), and so every step
carries its numbers as data attributes the tests read back. Filter values are stored text (a source
name can be anything): every label is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from html import escape

from workbench.curate.pair_filter import PairFilter, field_type

WIDTH = 900
LABEL_W, NUMBER_W, ROW_H, PAD = 330, 90, 26, 8
COLORS = {"total": "#64748b", "removed": "#dc2626", "kept": "#16a34a"}
_NAMED = {"finite_scores": "Non-finite scores", "duplicate_texts": "Same texts as a pair with a larger margin",
          "limit": "Beyond the limit"}
_FIELD_LABELS = {f.name: f.metadata["label"] for f in fields(PairFilter)}


@dataclass
class Bar:
    step: str        # "store", a waterfall step's name, or "exported"
    label: str       # what the tab shows
    why: str         # the manifest's reason (a tooltip)
    start: int       # the bar spans [start, end) of the store's pairs
    end: int
    removed: int | None = None  # for a filter step


def step_label(step: str, pair_filter: PairFilter) -> str:
    """A waterfall step as the tab names it: the filter input's label and the value set."""
    if step in _NAMED:
        return _NAMED[step]
    value = getattr(pair_filter, step)
    return _FIELD_LABELS[step] if field_type(step) is bool else f"{_FIELD_LABELS[step]}: {value}"


def waterfall_bars(report: dict, pair_filter: PairFilter) -> list[Bar]:
    """The bars of a `why_dropped` report: the store's pairs, each step (the limit only when the filter
    has one: the app exports every selected pair), then the exported pairs."""
    total = report["pairs_in_store"]
    bars = [Bar("store", "Pairs in the store", "every stored pair", 0, total)]
    for step in report["steps"]:
        if step["step"] == "limit" and pair_filter.limit is None:
            continue
        after = step["remaining"]
        bars.append(Bar(step["step"], step_label(step["step"], pair_filter), step["why"], after,
                        after + step["removed"], step["removed"]))
    bars.append(Bar("exported", "Exported", "the pairs the export writes", 0, report["kept"]))
    return bars


def waterfall_svg(report: dict, pair_filter: PairFilter) -> str:
    """The waterfall as SVG; a placeholder line when the store has no pairs."""
    total = report["pairs_in_store"]
    if not total:
        return '<div class="wb-waterfall-empty">No pairs in the store yet: nothing to drop.</div>'
    bars = waterfall_bars(report, pair_filter)
    plot_w = WIDTH - LABEL_W - NUMBER_W
    height = PAD * 2 + ROW_H * len(bars)

    def x(count: int) -> float:
        return LABEL_W + count / total * plot_w

    parts = []
    for row, bar in enumerate(bars):
        top = PAD + row * ROW_H
        kind = "removed" if bar.removed is not None else "kept" if bar.step == "exported" else "total"
        number = f"−{bar.removed:,}" if bar.removed else f"{bar.end - bar.start:,}"
        width = max(x(bar.end) - x(bar.start), 1.0 if bar.end > bar.start else 0.0)  # one pair stays visible
        attributes = f'data-step="{escape(bar.step)}" data-start="{bar.start}" data-end="{bar.end}"' + (
            f' data-removed="{bar.removed}"' if bar.removed is not None else "")
        parts.append(
            f'<g class="wb-step {kind}" {attributes}><title>{escape(bar.why)}</title>'
            f'<text x="{LABEL_W - 8}" y="{top + ROW_H * 0.65:.1f}" text-anchor="end">{escape(bar.label)}</text>'
            f'<rect x="{x(bar.start):.1f}" y="{top + 4}" width="{width:.1f}" height="{ROW_H - 8}" '
            f'fill="{COLORS[kind]}"/>'
            f'<text x="{WIDTH - 4}" y="{top + ROW_H * 0.65:.1f}" text-anchor="end" class="n">{number}</text></g>')
    return (f'<svg class="wb-waterfall" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="Pairs each filter step removed">{"".join(parts)}</svg>')


CSS = """
.wb-waterfall {width: 100%; height: auto; font-size: 12px;}
.wb-waterfall text {fill: var(--body-text-color);}
.wb-waterfall .n {font-variant-numeric: tabular-nums;}
.wb-waterfall-empty {color: var(--body-text-color-subdued); padding: 12px 0;}
"""
