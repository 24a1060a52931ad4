import json

import pyarrow as pa
import pytest

from tests.workbench.conftest import write_jsonl
from workbench import ids
from workbench.errors import NotFound, WorkbenchError
from workbench.ingest.importer import import_files
from workbench.curate.pairs import build_pairs
from workbench.store import queries


def _bon(store, tmp_path, records, name="ext"):
    import_files(store, [write_jsonl(tmp_path / f"bon-{len(records)}.jsonl", records)], score_name=name,
                 progress=False)


def _built(store):
    with store.connect() as con:
        return queries.fetch_dicts(con, """
            SELECT c.text AS chosen, r.text AS rejected, pr.score_chosen, pr.score_rejected, pr.margin,
                   pr.strategy, pr.params, pr.label_source, m.name AS rm
            FROM pairs pr JOIN responses c ON c.response_id = pr.chosen_id
            JOIN responses r ON r.response_id = pr.rejected_id JOIN reward_models m ON m.rm_id = pr.rm_id
            ORDER BY pr.margin DESC, c.text, r.text""")


def test_best_vs_worst_records_strategy_scores_and_reward_model(store, tmp_path):
    _bon(store, tmp_path, [{"prompt": "q", "responses": ["a", "b", "c", "d"], "scores": [0.1, 2.0, -1.0, 0.5]}])
    result = build_pairs(store, "ext", "best-vs-worst", progress=False)
    assert result.new_pairs == 1
    [pair] = _built(store)
    assert (pair["chosen"], pair["rejected"]) == ("b", "c")
    assert (pair["score_chosen"], pair["score_rejected"], pair["margin"]) == (2.0, -1.0, 3.0)
    assert (pair["strategy"], pair["label_source"], pair["rm"]) == ("best-vs-worst", "rm", "ext")
    assert json.loads(pair["params"])["min_margin"] == 0.0


def test_ties_never_pair_and_tie_rules_counter_length_bias(store, tmp_path):
    _bon(store, tmp_path, [
        {"prompt": "all tie", "responses": ["x", "y", "z"], "scores": [1.0, 1.0, 1.0]},
        {"prompt": "ties at both ends", "responses": ["long best", "best", "bad", "longer bad"],
         "scores": [1.0, 1.0, 0.0, 0.0]},
    ])
    build_pairs(store, "ext", "best-vs-worst", progress=False)
    pairs = _built(store)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("best", "longer bad")]


def test_min_margin_drops_near_ties(store, tmp_path):
    _bon(store, tmp_path, [{"prompt": "a", "responses": ["1", "2"], "scores": [1.0, 0.9]},
                           {"prompt": "b", "responses": ["3", "4"], "scores": [2.0, 0.0]}])
    result = build_pairs(store, "ext", "best-vs-worst", min_margin=0.5, progress=False)
    assert result.new_pairs == 1 and _built(store)[0]["chosen"] == "3"


def test_top_k_and_all_above_margin_counts(store, tmp_path):
    _bon(store, tmp_path, [{"prompt": "q", "responses": ["a", "b", "c", "d"], "scores": [4.0, 3.0, 2.0, 1.0]}])
    assert build_pairs(store, "ext", "top-k", k=2, progress=False).new_pairs == 4
    assert build_pairs(store, "ext", "all-above-margin", progress=False).new_pairs == 6
    assert build_pairs(store, "ext", "all-above-margin", min_margin=2.0, progress=False).new_pairs == 3
    for pair in _built(store):
        assert pair["score_chosen"] > pair["score_rejected"]


def test_best_vs_random_is_seeded(store, tmp_path):
    responses = [f"r{i}" for i in range(8)]
    _bon(store, tmp_path, [{"prompt": f"q{j}", "responses": responses, "scores": list(map(float, range(8)))}
                           for j in range(12)])
    picks = {}
    for seed in (1, 2, 1):
        with store.connect() as con:
            table = queries.candidate_pairs(con, "best-vs-random", {
                "rm_id": ids.external_scorer_id("ext"), "seed": seed, "min_margin": 0.0})
        picks.setdefault(seed, []).append(table["rejected_id"].to_pylist())
    assert picks[1][0] == picks[1][1]
    assert picks[1][0] != picks[2][0]
    build_pairs(store, "ext", "best-vs-random", seed=3, progress=False)
    assert all(p["chosen"] == "r7" and p["rejected"] != "r7" for p in _built(store))


def test_identical_generated_texts_never_pair(store, tmp_path):
    """Two samples with the same text collapse to one candidate before pairing."""
    import_files(store, [write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q"}])], progress=False)
    with store.connect() as con:
        pid = queries.fetch_value(con, "SELECT prompt_id FROM prompts")
    texts, scores = ["same", "same", "other"], [1.0, 0.9, 0.0]
    rids = [ids.generated_response_id("gen", pid, i) for i in range(3)]
    rm = ids.external_scorer_id("ext")

    def write(con):
        queries.insert_reward_model(con, rm, "ext", None, {}, None)
        queries.insert_new(con, "responses", pa.table({
            "response_id": rids, "prompt_id": [pid] * 3, "text": texts, "origin": ["generated"] * 3,
            "run_id": ["gen"] * 3, "sample_index": [0, 1, 2], "n_chars": [len(t) for t in texts]}))
        queries.insert_new(con, "scores", pa.table({"response_id": rids, "rm_id": [rm] * 3, "score": scores,
                                             "run_id": ["s"] * 3}))

    store.write(write)
    build_pairs(store, "ext", "all-above-margin", progress=False)
    assert [(p["chosen"], p["rejected"]) for p in _built(store)] == [("same", "other")]


def test_max_length_ratio_counts_missing_tokens_then_filters(store, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TOKENIZER", str(tiny_model_dir))  # byte-level: tokens == bytes
    _bon(store, tmp_path, [{"prompt": "a", "responses": ["x" * 10, "y" * 12], "scores": [1.0, 0.0]},
                           {"prompt": "b", "responses": ["x" * 10, "y" * 40], "scores": [1.0, 0.0]}])
    result = build_pairs(store, "ext", "best-vs-worst", max_length_ratio=1.5, progress=False)
    assert result.new_pairs == 1 and _built(store)[0]["rejected"] == "y" * 12
    with store.connect() as con:
        assert sorted(queries.fetch_rows(con, "SELECT n_chars, n_tokens FROM responses")) == [
            (10, 10), (10, 10), (12, 12), (40, 40)]


def test_rebuilding_is_idempotent_and_errors_are_clear(store, tmp_path):
    _bon(store, tmp_path, [{"prompt": "q", "responses": ["a", "b"], "scores": [1.0, 0.0]}])
    assert build_pairs(store, "ext", "best-vs-worst", progress=False).new_pairs == 1
    assert build_pairs(store, "ext", "best-vs-worst", progress=False).new_pairs == 0
    with pytest.raises(NotFound, match="reward model 'nope' not found"):
        build_pairs(store, "nope", "best-vs-worst", progress=False)
    with pytest.raises(WorkbenchError, match="top-k needs --k"):
        build_pairs(store, "ext", "top-k", progress=False)


def test_best_vs_worst_aggregate_equals_the_ranked_window_on_ties_and_duplicates(store, tmp_path):
    """best-vs-worst runs as one aggregate; top-k with k=1 runs the window ranking: same rule, same pairs."""
    import random

    rng = random.Random(3)
    records = []
    for i in range(60):
        n = rng.randint(1, 6)
        texts = [rng.choice(["a", "bb", "ccc", "dddd", f"u{i}-{j}"]) for j in range(n)]
        records.append({"prompt": f"q{i}", "responses": list(dict.fromkeys(texts)),
                        "scores": [float(rng.choice([0, 1, 1, 2])) for _ in dict.fromkeys(texts)]})
    _bon(store, tmp_path, records)
    # generated replies repeating imported texts (and each other), for the duplicate rule
    rm = ids.external_scorer_id("ext")
    with store.connect() as con:
        prompts = queries.fetch_rows(con, "SELECT prompt_id FROM prompts ORDER BY text LIMIT 20")
    rows = [(ids.generated_response_id("gen", pid, k), pid, rng.choice(["a", "bb", "zz"]), k)
            for (pid,) in prompts for k in range(3)]

    def write(con):
        queries.insert_new(con, "responses", pa.table({
            "response_id": [r[0] for r in rows], "prompt_id": [r[1] for r in rows], "text": [r[2] for r in rows],
            "origin": ["generated"] * len(rows), "run_id": ["gen"] * len(rows), "sample_index": [r[3] for r in rows],
            "n_chars": [len(r[2]) for r in rows]}))
        queries.insert_new(con, "scores", pa.table({"response_id": [r[0] for r in rows], "rm_id": [rm] * len(rows),
                                                    "score": [float(rng.choice([0, 2, 3])) for _ in rows],
                                                    "run_id": ["s"] * len(rows)}))

    store.write(write)
    for extra in ({}, {"min_margin": 1.5}, {"run": "gen"}, {"source": "bon-60"}):
        params = {"rm_id": rm, "min_margin": 0.0, **extra}
        with store.connect() as con:
            worst = queries.candidate_pairs(con, "best-vs-worst", params)
            top1 = queries.candidate_pairs(con, "top-k", params | {"k": 1})
        assert worst.num_rows > 0 and worst.to_pylist() == top1.to_pylist(), extra
