"""The Curate tab's why-dropped waterfall: the chart draws the export manifest's `why_dropped` numbers
for the same filter, escapes filter values, and says why when there is none."""

import re

import pytest

from tests.ui.conftest import ANY, NO_FILTER
from ui.context import AppContext
from ui.curate_tab import to_filter, waterfall_html
from ui.waterfall import waterfall_svg
from workbench.curate import curation
from workbench.curate.explain import why_dropped
from workbench.curate.pair_filter import PairFilter

STEP = re.compile(r'<g class="wb-step \w+" data-step="([^"]+)" data-start="(\d+)" data-end="(\d+)"'
                  r'(?: data-removed="(\d+)")?>')


def chart_numbers(html: str) -> dict:
    """{step: removed} of the filter steps, plus the store's and the exported pairs, read off the SVG."""
    found = {step: (int(start), int(end), removed) for step, start, end, removed in STEP.findall(html)}
    assert found, html
    steps = {step: int(removed) for step, (_, _, removed) in found.items() if removed != ""}
    return {"store": found["store"][1], "exported": found["exported"][1], "steps": steps}


@pytest.fixture
def ctx(app_store, tmp_path):
    return AppContext.create(app_store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r")


@pytest.mark.parametrize("changes", [{}, {0: "bon-demo", 4: "2", 9: True}, {2: "ext@1", 5: "0.5", 7: "10"}])
def test_the_chart_shows_the_numbers_the_export_manifest_records(ctx, changes):
    values = [changes.get(i, v) for i, v in enumerate(NO_FILTER)]
    chart = chart_numbers(waterfall_html(ctx, "trl", values))
    done = curation.export_curated(ctx.store, ctx.export_dir, f"w{len(changes)}", to_filter(*values))
    recorded = done["manifest"]["why_dropped"]
    assert chart["store"] == recorded["pairs_in_store"] and chart["exported"] == recorded["kept"] == done["rows"]
    # every step the manifest records, in its order (the app sets no limit, so that step is not drawn)
    drawn = [(s["step"], s["removed"]) for s in recorded["steps"] if s["step"] != "limit"]
    assert list(chart["steps"].items()) == drawn
    assert sum(chart["steps"].values()) + chart["exported"] == chart["store"]
    if changes:
        assert 0 < chart["exported"] < chart["store"]


def test_filter_values_are_escaped_and_a_limit_is_drawn_when_set(app_store):
    hostile = PairFilter(source="<script>alert(1)</script>", limit=3)
    svg = waterfall_svg(why_dropped(app_store, hostile), hostile)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    numbers = chart_numbers(svg)
    assert numbers["exported"] == 0 and numbers["steps"]["source"] == numbers["store"] and "limit" in numbers["steps"]


def test_no_chart_for_a_bad_filter_or_an_sft_export(ctx):
    bad = [*NO_FILTER[:4], "1; DROP TABLE pairs", *NO_FILTER[5:]]
    assert "fix the filter" in waterfall_html(ctx, "trl", bad) and "Minimum margin must be a number" in waterfall_html(
        ctx, "trl", bad)
    assert "SFT export writes replies" in waterfall_html(ctx, "sft", [ANY] * 4 + [""] * 5 + [False, False])
