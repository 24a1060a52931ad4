"""The demo pipeline end to end on a tiny model (the real one runs in `make demo`)."""

import json

from engine.evaluation import pairwise_accuracy
from workbench.demo import DEMO_RM, DEMO_SOURCE, DemoSettings, demo_prompts_path, run_demo
from workbench.export import count_pairs
from workbench.pair_filter import PairFilter
from workbench.stats import store_stats
from workbench.store import Store, queries


def test_demo_prompts_are_varied_and_tagged():
    records = [json.loads(line) for line in demo_prompts_path().read_text().splitlines()]
    assert 60 <= len(records) <= 100
    tags = {t for r in records for t in r["tags"]}
    assert {"advice", "coding", "writing", "facts", "safety"} <= tags
    assert len({r["prompt"] for r in records}) == len(records)


def test_demo_builds_a_populated_store_and_a_second_run_reuses_it(tmp_path, tiny_model_dir):
    store = Store(tmp_path / "demo.duckdb")
    settings = DemoSettings(work_dir=tmp_path / "demo", policy=str(tiny_model_dir), n=2, max_new_tokens=8,
                            epochs=1.0, min_margin=0.0)  # a random tiny reward model has tiny margins
    result = run_demo(store, settings, progress=False)
    stats = store_stats(store)
    assert stats["prompts"] == 75 and stats["responses"] == 150
    assert stats["scores"][f"{DEMO_RM}@1"] == 150
    assert stats["pairs"] > 0 and stats["exports"] == 1
    assert (tmp_path / "demo" / "contrast_pairs.jsonl").exists()
    assert (tmp_path / "demo" / "rm-v1" / "config.json").exists()
    _assert_heldout_evaluation(tmp_path / "demo", result["rm"]["eval"])
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM bon_picks") == 75
        # each pick is its prompt's best-scored sample
        assert queries.fetch_value(con, """
            SELECT count(*) FROM bon_picks b JOIN responses r ON r.prompt_id = b.prompt_id AND r.run_id = b.run_id
            JOIN scores s ON s.response_id = r.response_id AND s.rm_id = b.rm_id WHERE s.score > b.score""") == 0
        runs = dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs GROUP BY 1"))
    assert runs["generation"] == 1 and runs["training"] == 1 and runs["scoring"] == 1
    exported = (tmp_path / "demo" / "dpo.jsonl").read_text().splitlines()
    assert len(exported) == count_pairs(store, PairFilter(label="rm")) > 0
    assert {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"} <= json.loads(exported[0]).keys()

    # A second run reuses everything: no new samples, training, scores or contrastive pairs.
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo" / "contrast_pairs.jsonl",
                                               tmp_path / "demo" / "rm-v1" / "training_complete.json")}
    again = run_demo(store, DemoSettings(work_dir=tmp_path / "demo", policy=str(tiny_model_dir), n=2,
                                         max_new_tokens=8, epochs=1.0, min_margin=0.0), progress=False)
    assert store_stats(store)["responses"] == 150 and store_stats(store)["scores"] == stats["scores"]
    assert again["rm"]["rm_id"] == result["rm"]["rm_id"]
    assert {p: p.stat().st_mtime_ns for p in made} == made
    with store.connect() as con:
        assert dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs WHERE kind <> 'export' GROUP BY 1")) \
            == {k: v for k, v in runs.items() if k != "export"}
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM prompts WHERE source = ?", [DEMO_SOURCE]) == 75


def _assert_heldout_evaluation(work, evaluation):
    """The first reward model is evaluated on a quarter of the prompts it never trained on, and the
    numbers it reports are those of its held-out file (n, and the longer-reply baseline)."""
    heldout = [json.loads(line) for line in (work / "rm-v1" / "heldout_pairs.jsonl").read_text().splitlines()]
    contrast = [json.loads(line) for line in (work / "contrast_pairs.jsonl").read_text().splitlines()]
    heldout_prompts = {json.dumps(p["prompt"]) for p in heldout}
    all_prompts = {json.dumps(p["prompt"]) for p in contrast}
    assert 0 < len(heldout_prompts) < len(all_prompts) / 2  # about a quarter
    # whole prompts are held out: every contrastive pair of a held-out prompt is in the held-out file
    assert len(heldout) == sum(json.dumps(p["prompt"]) in heldout_prompts for p in contrast)
    assert evaluation["n"] == len(heldout)
    chosen = [len(p["chosen"][0]["content"]) for p in heldout]
    rejected = [len(p["rejected"][0]["content"]) for p in heldout]
    assert evaluation["length_baseline"] == pairwise_accuracy(chosen, rejected)
    halves = evaluation["accuracy"] * 2 * len(heldout)  # each pair counts 1, 1/2 (a tie) or 0
    assert abs(halves - round(halves)) < 1e-9
