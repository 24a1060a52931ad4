"""Scores, margins and accuracies show with the same number of decimals everywhere in the app."""

import pandas as pd

from ui import render


def test_scores_always_show_three_decimals():
    assert [render.decimals(v) for v in (1.0, 0.12345, -2.5, 1234.56789, None, float("nan"))] == [
        "1.000", "0.123", "-2.500", "1234.568", "", ""]
    frame = pd.DataFrame({"margin": [0.5, 1.23456, None], "labeler": ["a", "b", "c"]})
    shown = render.fixed_decimals(frame, ["margin", "absent"])
    assert shown["margin"].tolist() == ["0.500", "1.235", ""] and frame["margin"].iloc[0] == 0.5


def test_comparison_table_keeps_the_pair_count_whole():
    table = pd.DataFrame({"metric": ["n", "accuracy", "mean_margin"], "old@1": [1200.0, 0.55, 0.1],
                          "new@1": [1200.0, 0.7, None], "change": [0.0, 0.15, None]})
    shown = render.comparison_table(table)
    assert shown["old@1"].tolist() == ["1,200", "0.550", "0.100"]
    assert shown["new@1"].tolist() == ["1,200", "0.700", ""] and shown["change"].tolist() == ["0", "0.150", ""]
    assert 'class="wb-scores"><span>rm</span><b>0.500</b>' in render._response_card(0, {
        "bon_pick_by": [], "chosen": 0, "rejected": 0, "flags": [], "scores": {"rm": 0.5}, "finish_reason": "stop",
        "origin": "x", "sample_index": None, "n_tokens": None, "pick": False, "text": "t", "n_chars": 1})


def test_training_curve_starts_at_zero_with_whole_step_ticks():
    """Accuracy 1.0 must not sit on the bottom edge (the axis starts at 0) and a 3-step run has
    ticks at steps 1, 2, 3 only."""
    import re

    import pandas as pd

    from ui.curve import step_ticks, training_curve_svg, value_ticks

    assert step_ticks(3) == [1, 2, 3] and step_ticks(100) == [1, *range(10, 101, 10)]
    assert all(isinstance(s, int) for s in step_ticks(37)) and len(step_ticks(1000)) <= 11
    assert value_ticks(1.0)[0] == 0 and value_ticks(2.78)[-1] >= 2.78
    curve = pd.DataFrame({"step": [1, 2, 3] * 2, "value": [2.9, 2.7, 2.6, 1.0, 1.0, 1.0],
                          "metric": ["loss"] * 3 + ["accuracy"] * 3})
    svg = training_curve_svg(curve)
    labels = re.findall(r'text-anchor="middle">([^<]+)</text>', svg)
    assert labels == ["1", "2", "3", "step"]  # no 1.5, 2.5
    left = re.findall(r'text-anchor="end">([^<]+)</text>', svg)
    assert left[0] == "0" and float(left[-1]) >= 2.9
    accuracy = re.search(r'<polyline points="([^"]+)"[^>]*stroke="#16a34a"', svg).group(1)
    bottom = max(float(y) for y in re.findall(r'y1="([\d.]+)"', svg))
    assert all(float(p.split(",")[1]) < bottom - 50 for p in accuracy.split())  # well above the x axis
    assert ">loss</text>" in svg and ">accuracy</text>" in svg
    assert "first step" in training_curve_svg(None)
