"""The demo pipeline end to end on a tiny model (the real one runs in `make demo`)."""

import json

from engine.evaluation import pairwise_accuracy
from workbench.demo import DEMO_INSTRUCTION, DEMO_RM, DEMO_SOURCE, DemoSettings, demo_prompts_path, run_demo
from workbench.exports.export import count_pairs
from workbench.ingest.importer import import_files
from workbench.curate.pairs import build_pairs
from workbench.curate.pair_filter import PairFilter
from workbench.curate.stats import store_stats
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
    with store.connect() as con:
        runs = dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs GROUP BY 1"))
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
        # every prompt asks for a short answer, so replies end before the token cap
        messages = [json.loads(m) for (m,) in queries.fetch_rows(
            con, "SELECT messages FROM prompts WHERE source = ?", [DEMO_SOURCE])]
        runs = dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs GROUP BY 1"))
    assert all(len(m) == 1 and m[0]["role"] == "user" and m[0]["content"].endswith(DEMO_INSTRUCTION) for m in messages)
    pair = json.loads((tmp_path / "demo" / "contrast_pairs.jsonl").read_text().splitlines()[0])
    assert pair["prompt"][-1]["content"].endswith(DEMO_INSTRUCTION)  # the model learns on prompts as the store holds them
    assert runs["generation"] == 1 and runs["training"] == 1 and runs["scoring"] == 1
    exported = (tmp_path / "demo" / "dpo.jsonl").read_text().splitlines()
    demo_pairs = PairFilter(rm=result["rm"]["rm_id"], strategy="best-vs-worst", source=DEMO_SOURCE)
    assert len(exported) == count_pairs(store, demo_pairs) > 0
    assert {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"} <= json.loads(exported[0]).keys()

    # Other work on the store between two demos: pairs by the demo's model with another strategy, and
    # pairs labelled by another scorer (an imported Best-of-N file's scores).
    build_pairs(store, result["rm"]["rm_id"], "all-above-margin", progress=False)
    (tmp_path / "bon.jsonl").write_text(json.dumps({"prompt": "Hi?", "responses": ["Hello.", "Go."],
                                                    "scores": [1.0, 0.0]}) + "\n")
    import_files(store, [tmp_path / "bon.jsonl"], score_name="judge", progress=False)
    build_pairs(store, "judge", "best-vs-worst", progress=False)
    assert count_pairs(store, PairFilter(label="rm")) > len(exported)
    export_bytes = (tmp_path / "demo" / "dpo.jsonl").read_bytes()
    stats = store_stats(store)
    with store.connect() as con:
        runs_before = dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs GROUP BY 1"))

    # A second run reuses everything: no new samples, training, scores or contrastive pairs, and leaves
    # the demo's export as it was.
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo" / "contrast_pairs.jsonl",
                                               tmp_path / "demo" / "rm-v1" / "training_complete.json")}
    again = run_demo(store, DemoSettings(work_dir=tmp_path / "demo", policy=str(tiny_model_dir), n=2,
                                         max_new_tokens=8, epochs=1.0, min_margin=0.0), progress=False)
    assert store_stats(store)["responses"] == stats["responses"] and store_stats(store)["scores"] == stats["scores"]
    assert again["rm"]["rm_id"] == result["rm"]["rm_id"]
    assert {p: p.stat().st_mtime_ns for p in made} == made
    assert (tmp_path / "demo" / "dpo.jsonl").read_bytes() == export_bytes
    with store.connect() as con:
        assert dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs GROUP BY 1")) == runs_before
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
