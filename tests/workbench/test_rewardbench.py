import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from workbench.errors import InputError
from workbench.models.evaluation import evaluate_rewardbench
from workbench.models.rewardbench import (RewardBenchRow, read_rewardbench, rewardbench_report, row_outcome,
                                   wilson_interval)

SAMPLE = Path(__file__).resolve().parents[2] / "workbench" / "data" / "rewardbench_sample.jsonl"


class TableScorer:
    """Scores each reply by looking its text up; unknown replies score 0."""

    def __init__(self, table: dict[str, float]):
        self.table = table

    def score(self, items, progress=None, **_):
        return [self.table.get(item.response, 0.0) for item in items]


def _sample_rows():
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


# The outcome each sample row should get (ties count half; s11 is best-of-4 and loses to one rejected).
OUTCOMES = {"s01": 1, "s02": 0, "s03": 0.5, "s04": 1, "s05": 1, "s06": 0, "s07": 1, "s08": 1, "s09": 0.5,
            "s10": 1, "s11": 0, "s12": 1, "s13": 0}


def _scorer_for_outcomes() -> TableScorer:
    table = {}
    for row in _sample_rows():
        rejected = row["rejected"] if isinstance(row["rejected"], list) else [row["rejected"]]
        outcome = OUTCOMES[row["id"]]
        table[row["chosen"]] = {1: 2.0, 0.5: 1.0, 0: 0.0}[outcome]
        for i, reply in enumerate(rejected):
            table[reply] = 1.0 if outcome != 0 or i < len(rejected) - 1 else 3.0
        if row["id"] == "s11":  # chosen beats two of the three rejected replies, loses to the last
            assert table[row["chosen"]] == 0.0
            table[row["chosen"]] = 2.0
            table[rejected[-1]] = 2.5
    return TableScorer(table)


def test_row_outcome_best_of_k_and_ties():
    assert row_outcome(2.0, [1.0]) == 1.0
    assert row_outcome(1.0, [1.0]) == 0.5
    assert row_outcome(2.0, [1.0, 0.0, 1.9]) == 1.0
    assert row_outcome(2.0, [1.0, 2.5, 0.0]) == 0.0      # must beat every rejected reply
    assert row_outcome(2.0, [2.0, 1.0]) == 0.5           # ties the best rejected one


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)


def test_sample_report_hand_computed(store):
    report = evaluate_rewardbench(store, "stub", [str(SAMPLE)], scorer=_scorer_for_outcomes())
    subsets = report["subsets"]
    assert report["n"] == 13 and report["skipped"] == 0
    assert {k: v["accuracy"] for k, v in subsets.items()} == {
        "alpacaeval-easy": 0.5, "mt-bench-med": 0.5, "llmbar-natural": 1.0, "mt-bench-hard": 0.0,
        "refusals-dangerous": 1.0, "xstest-should-respond": 0.75, "math-prm": 0.5, "hep-python": 1.0, "hep-js": 0.0}
    assert subsets["mt-bench-med"]["ties"] == 1 and subsets["xstest-should-respond"]["ties"] == 1
    sections = {k: v["accuracy"] for k, v in report["sections"].items()}
    assert sections == pytest.approx({"chat": 0.5, "chat-hard": 2 / 3, "safety": 2.5 / 3, "reasoning": 0.5})
    assert report["score"]["value"] == pytest.approx((0.5 + 2 / 3 + 2.5 / 3 + 0.5) / 4)
    assert subsets["xstest-should-respond"]["ci95"] == pytest.approx(wilson_interval(1.5, 2))
    for part in [report["score"], *report["sections"].values()]:
        low, high = part["ci95"]
        value = part.get("value", part.get("accuracy"))
        assert 0 <= low <= value <= high <= 1
    assert report["missing_sections"] == [] and report["unmapped_subsets"] == []


def _rows(subset, outcomes):
    return [RewardBenchRow([{"role": "user", "content": "q"}], "c", ("r",), subset, f"{subset}{i}")
            for i in range(len(outcomes))], list(outcomes)


def test_reasoning_weighs_math_as_much_as_all_code_rows():
    math, math_outcomes = _rows("math-prm", [1.0])
    code, code_outcomes = _rows("hep-go", [0.0, 0.0, 0.0])
    report = rewardbench_report(math + code, math_outcomes + code_outcomes)
    # pooled over rows this would be 0.25; RewardBench weighs math like the code subsets together
    assert report["sections"]["reasoning"]["accuracy"] == 0.5
    assert report["sections"]["reasoning"]["weights"] == {"math-prm": 3.0, "hep-go": 3.0}
    assert report["score"]["value"] == 0.5 and report["missing_sections"] == ["chat", "chat-hard", "safety"]


def test_unmapped_subsets_are_reported_but_in_no_section():
    rows, outcomes = _rows("my-own-set", [1.0, 0.0])
    report = rewardbench_report(rows, outcomes)
    assert report["subsets"]["my-own-set"]["accuracy"] == 0.5 and report["subsets"]["my-own-set"]["section"] is None
    assert report["unmapped_subsets"] == ["my-own-set"] and report["score"] is None and report["sections"] == {}


def test_bad_rows_are_refused_with_file_line_and_field(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b", "subset": "hep-go"}
    path = write_jsonl(tmp_path / "rb.jsonl", [good, {**good, "subset": None}, {**good, "rejected": []}])
    with pytest.raises(InputError, match=r"rb.jsonl:2: .*field 'subset'"):
        read_rewardbench([path])
    rows, skipped = read_rewardbench([path], skip_invalid=True)
    assert len(rows) == 1 and skipped == 2
    with pytest.raises(InputError, match="several chosen"):
        read_rewardbench([write_jsonl(tmp_path / "c.jsonl", [{**good, "chosen": ["a", "b"]}])])


def test_cli_rewardbench_with_a_tiny_reward_model(tmp_path, tiny_model_dir):
    from engine.reward_model import RewardModel
    from cli import load_commands
    from workbench.models.rewardbench import score_rows
    from engine.scoring import load_scorer

    model_dir = RewardModel.from_base(tiny_model_dir).save(tmp_path / "rm")
    runner = CliRunner()
    db = str(tmp_path / "t.duckdb")
    result = runner.invoke(load_commands(), ["--db", db, "-q", "rm", "eval", "--rm", str(model_dir), "--data",
                                             str(SAMPLE), "--format", "rewardbench", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows, _ = read_rewardbench([SAMPLE])
    expected = rewardbench_report(rows, score_rows(load_scorer(str(model_dir), max_length=1024), rows))
    assert report["subsets"] == expected["subsets"] and report["score"] == expected["score"]
    text = runner.invoke(load_commands(), ["--db", db, "-q", "rm", "eval", "--rm", str(model_dir), "--data",
                                           str(SAMPLE), "--format", "rewardbench"])
    assert text.exit_code == 0 and "score (mean of sections)" in text.output and "Wilson" in text.output
