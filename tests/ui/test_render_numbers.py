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
