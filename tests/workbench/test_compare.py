import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from workbench.models.compare import compare_reward_models, compare_scores, disagreement_table, summary_table
from workbench.errors import WorkbenchError
from workbench.ingest.importer import import_files


def _one_prompt(a, b, chars=None):
    n = len(a)
    return compare_scores(["p"] * n, [f"r{i}" for i in range(n)], chars or [10 * (i + 1) for i in range(n)], a, b)


def test_known_ranking_by_hand():
    # one swap among four replies: rho = 1 - 6 * 2 / (4 * 15) = 0.8; tau = (5 - 1) / 6
    result = _one_prompt([1, 2, 3, 4], [1, 3, 2, 4])
    assert result["spearman"] == pytest.approx(0.8) and result["kendall_tau"] == pytest.approx(4 / 6)
    assert result["per_prompt"]["spearman_median"] == pytest.approx(0.8)
    assert result["per_prompt"]["kendall_tau_median"] == pytest.approx(4 / 6)
    assert result["pairs"] == {"same_prompt_pairs": 6, "ordered_by_both": 6, "same_order": 5,
                               "agreement": pytest.approx(5 / 6), "tied_by_a": 0, "tied_by_b": 0}
    [d] = result["disagreements"]
    assert (d["a_prefers"], d["b_prefers"]) == ("r2", "r1") and d["a_scores"] == [3, 2] and d["b_scores"] == [2, 3]
    # lengths 10..40 grow with A's scores exactly
    assert result["length_correlation"]["a"] == pytest.approx(1.0)


def test_ties_and_reversed_order():
    result = _one_prompt([1, 1, 2], [3, 2, 1])
    # A ties r0/r1; the other two pairs are ordered by both, oppositely
    assert result["pairs"]["tied_by_a"] == 1 and result["pairs"]["ordered_by_both"] == 2
    assert result["pairs"]["agreement"] == 0.0
    assert result["per_prompt"]["kendall_tau_median"] == pytest.approx(-2 / np.sqrt(2 * 3))


def test_against_scipy_and_brute_force_on_random_scores():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    prompts, responses, a, b = [], [], [], []
    for p in range(40):
        n = int(rng.integers(1, 7))
        base = rng.integers(0, 4, n).astype(float)          # small integers: plenty of ties
        prompts += [f"p{p:02d}"] * n
        responses += [f"p{p:02d}-r{i}" for i in range(n)]
        a += list(base)
        b += list(base + rng.integers(-2, 3, n))
    chars = list(rng.integers(5, 500, len(a)))
    result = compare_scores(prompts, responses, chars, a, b, top=5)
    assert result["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic)
    assert result["kendall_tau"] == pytest.approx(stats.kendalltau(a, b).statistic)
    rhos, taus, same, both = [], [], 0, 0
    for p in sorted(set(prompts)):
        idx = [i for i, q in enumerate(prompts) if q == p]
        x, y = np.array(a)[idx], np.array(b)[idx]
        if len(idx) >= 2 and x.std() > 0 and y.std() > 0:
            rhos.append(stats.spearmanr(x, y).statistic)
            taus.append(stats.kendalltau(x, y).statistic)
        for i, j in itertools.combinations(idx, 2):
            if a[i] != a[j] and b[i] != b[j]:
                both += 1
                same += (a[i] > a[j]) == (b[i] > b[j])
    assert result["per_prompt"]["spearman_median"] == pytest.approx(np.median(rhos))
    assert result["per_prompt"]["kendall_tau_median"] == pytest.approx(np.median(taus))
    assert result["per_prompt"]["prompts_kendall"] == len(taus)
    assert result["pairs"]["ordered_by_both"] == both and result["pairs"]["same_order"] == same
    assert result["length_correlation"]["b"] == pytest.approx(np.corrcoef(b, chars)[0, 1])
    firmness = [d["firmness"] for d in result["disagreements"]]
    assert len(firmness) == 5 and firmness == sorted(firmness, reverse=True)


@pytest.fixture
def two_scored(store, tmp_path):
    texts = {"q1": ["short", "a much longer reply", "mid reply"], "q2": ["x", "yy", "zzz"]}
    scores = {"judge": {"q1": [0.0, 5.0, 1.0], "q2": [1.0, 2.0, 3.0]},
              "critic": {"q1": [5.0, 0.0, 1.0], "q2": [1.0, 2.0, 3.0]}}
    for name, by_prompt in scores.items():
        rows = [{"prompt": q, "responses": texts[q], "scores": by_prompt[q]} for q in texts]
        import_files(store, [write_jsonl(tmp_path / f"{name}.jsonl", rows)], source="s", score_name=name,
                     progress=False)
    return store


def test_store_comparison_names_the_firmest_disagreement(two_scored):
    result = compare_reward_models(two_scored, "judge", "critic", top=2)
    assert result["a"] == "judge@1" and result["responses"] == 6 and result["prompts"] == 2
    first = result["disagreements"][0]
    assert first["prompt"] == "q1" and first["a_prefers_text"] == "a much longer reply"
    assert first["b_prefers_text"] == "short" and first["a_scores"] == [5.0, 0.0] and first["b_scores"] == [0.0, 5.0]
    # q1: the models order all three pairs oppositely; q2: all three alike
    assert result["pairs"]["same_order"] == 3 and result["pairs"]["ordered_by_both"] == 6
    table = disagreement_table(result)
    assert list(table["prompt_id"]) == [d["prompt_id"] for d in result["disagreements"]]
    summary = dict(summary_table(result).itertuples(index=False))
    assert [type(summary[k]) for k in ("Responses scored by both", "Prompts")] == [int, int]
    assert summary["Same-prompt pairs ordered the same way"] == 0.5
    with pytest.raises(WorkbenchError, match="compared with itself"):
        compare_reward_models(two_scored, "judge", "judge@1")
    with pytest.raises(WorkbenchError, match="fewer than two of the same"):
        compare_reward_models(two_scored, "judge", "critic", source="nowhere")


def test_cli_compare(two_scored):
    from cli import load_commands

    runner = CliRunner()
    base = ["--db", str(two_scored.path), "-q", "rm", "compare", "judge", "critic"]
    result = runner.invoke(load_commands(), [*base, "--json", "--top", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["b"] == "critic@1" and len(data["disagreements"]) == 1
    text = runner.invoke(load_commands(), base)
    assert text.exit_code == 0 and "Kendall tau-b, per prompt (median)" in text.output
    assert "A prefers (5 > 0): a much longer reply" in text.output
    # counts print as integers, not as the floats a mixed pandas column would make of them
    lines = dict(line.rsplit(None, 1) for line in text.output.splitlines()
                 if line.startswith(("Responses scored by both", "Prompts ", "Same-prompt pairs ordered by both")))
    assert lines == {"Responses scored by both": "6", "Prompts": "2", "Same-prompt pairs ordered by both": "6"}
    missing = runner.invoke(load_commands(), ["--db", str(two_scored.path), "rm", "compare", "judge", "nope"])
    assert missing.exit_code != 0 and "not found" in missing.output and "Traceback" not in missing.output
