"""Why pairs are dropped: the export's waterfall, `workbench explain`, the length-bias gate."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.workbench.conftest import table_counts, write_jsonl
from cli import load_commands
from workbench.errors import WorkbenchError
from workbench.curate.explain import explain_pair
from workbench.exports.export import export_pairs
from workbench.ingest.importer import import_files
from workbench.curate.pair_filter import PairFilter
from workbench.curate.pairs import build_pairs
from workbench.store import queries


@pytest.fixture
def filled(store, tmp_path):
    human = [{"prompt": f"question {i}", "chosen": "good answer " * (i + 1), "rejected": f"bad {i}"} for i in range(5)]
    import_files(store, [write_jsonl(tmp_path / "human.jsonl", human)], source="human-src", progress=False)
    bon = [{"prompt": f"bon {i}", "responses": ["first", "second reply", "third one here"], "scores": [i, 0.5, -1.0]}
           for i in range(4)]
    import_files(store, [write_jsonl(tmp_path / "bon.jsonl", bon)], source="bon-src", score_name="ext",
                 progress=False)
    build_pairs(store, "ext", "best-vs-worst", progress=False)
    build_pairs(store, "ext", "top-k", k=1, progress=False)  # the same texts again, as other pair ids
    return store


def _pairs(store, where: str = "true") -> list[dict]:
    with store.connect() as con:
        return queries.fetch_dicts(con, f"SELECT * FROM pairs WHERE {where} ORDER BY pair_id")


def test_the_waterfall_adds_up_to_the_stores_pairs(filled, tmp_path):
    flt = PairFilter(source="bon-src", min_margin=1.6, limit=1)
    result = export_pairs(filled, tmp_path / "out.jsonl", pair_filter=flt)
    water = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())["why_dropped"]
    removed = {s["step"]: s["removed"] for s in water["steps"]}
    assert water["pairs_in_store"] == len(_pairs(filled)) == 5 + 4 + 4
    assert removed["source"] == 5  # the human pairs, first
    # bon i has margin max(i, 0.5) + 1: i = 0 (1.5) falls under 1.6, twice (two strategies)
    assert removed["min_margin"] == 2
    assert removed["duplicate_texts"] == 3  # each remaining text triple came from two strategies
    assert removed["limit"] == 2 and water["kept"] == result.rows == 1
    assert sum(removed.values()) + water["kept"] == water["pairs_in_store"]


def test_explain_names_the_filter_that_dropped_a_pair(filled):
    human = _pairs(filled, "label_source = 'human'")[0]
    account = explain_pair(filled, human["pair_id"][:10], PairFilter(source="bon-src"))
    assert account["verdict"] == "out" and account["dropped_by"]["step"] == "source"
    assert "human-src" in account["dropped_by"]["why"]
    low = _pairs(filled, "margin < 1.6 AND label_source = 'rm'")[0]
    account = explain_pair(filled, low["pair_id"], PairFilter(min_margin=1.6))
    assert account["dropped_by"]["step"] == "min_margin" and "margin 1.5" in account["dropped_by"]["why"]
    # of two pairs with the same texts, the one with the lower id represents them
    twins = _pairs(filled, "margin = 4.0")
    assert len(twins) == 2
    kept, lost = (explain_pair(filled, p["pair_id"]) for p in twins)
    assert kept["verdict"] == "in" and lost["dropped_by"]["step"] == "duplicate_texts"
    assert twins[0]["pair_id"] in lost["dropped_by"]["why"]
    replies = {r["response_id"]: r for r in kept["replies"]}
    assert replies[twins[0]["chosen_id"]]["scores"][0]["score"] == 3.0  # the score that made it, and its run
    assert kept["pair_run"]["kind"] == "pairs"


def test_explain_cli_and_its_refusals(filled):
    low = _pairs(filled, "margin < 1.6 AND label_source = 'rm'")[0]
    runner = CliRunner()
    result = runner.invoke(load_commands(), ["--db", str(filled.path), "explain", low["pair_id"][:8],
                                             "--min-margin", "1.6"])
    assert result.exit_code == 0, result.output
    assert "OUT: dropped by min_margin" in result.output and "ext@1" in result.output
    result = runner.invoke(load_commands(), ["--db", str(filled.path), "explain", "zzzz"])
    assert result.exit_code == 1 and "no pair id starts with 'zzzz'" in result.output


def test_length_bias_is_cohens_d_and_the_gate_refuses_with_a_fix(filled, tmp_path):
    flt = PairFilter(label="human")
    result = export_pairs(filled, tmp_path / "h.jsonl", pair_filter=flt)
    chosen = np.array([len("good answer " * (i + 1)) for i in range(5)], float)
    rejected = np.array([len(f"bad {i}") for i in range(5)], float)
    expected = (chosen.mean() - rejected.mean()) / np.sqrt((chosen.var(ddof=1) + rejected.var(ddof=1)) / 2)
    assert result.length_bias["cohens_d"] == pytest.approx(expected, abs=1e-3)
    assert result.length_bias["longer_wins"] == 1.0
    before = table_counts(filled)
    with filled.connect() as con:
        exports = queries.fetch_value(con, "SELECT count(*) FROM exports")
    with pytest.raises(WorkbenchError, match=r"Cohen's d = \+\d.*above --max-length-bias 0.5"):
        export_pairs(filled, tmp_path / "gated.jsonl", pair_filter=flt, max_length_bias=0.5)
    assert not (tmp_path / "gated.jsonl").exists() and table_counts(filled) == before
    with filled.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM exports") == exports
    assert export_pairs(filled, tmp_path / "ok.jsonl", pair_filter=flt, max_length_bias=abs(expected) + 0.01).rows == 5


def test_the_gate_names_the_length_ratio_that_helps(store, tmp_path):
    # eight pairs with a much longer chosen reply, eight of nearly equal length that go either way
    rows = [{"prompt": f"long {i}", "chosen": "x" * 300, "rejected": "y" * 20} for i in range(8)]
    rows += [{"prompt": f"even {i}", "chosen": "a" * (100 + (7 if i % 2 else -7)), "rejected": "b" * 100}
             for i in range(8)]
    import_files(store, [write_jsonl(tmp_path / "p.jsonl", rows)], progress=False)
    with pytest.raises(WorkbenchError, match=r"within a length ratio of 2.0 \(8 of 16\).*--max-length-ratio 2.0"):
        export_pairs(store, tmp_path / "x.jsonl", max_length_bias=0.3)
