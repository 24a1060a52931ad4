"""The demo pipeline end to end on a tiny model (the real one runs in `make demo`)."""

import json
import time

from workbench.demo import DEMO_RM, DEMO_SOURCE, DemoSettings, demo_prompts_path, run_demo
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
    assert 0 <= result["rm"]["eval"]["accuracy"] <= 1 and result["rm"]["eval"]["n"] > 0
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM bon_picks") == 75
        runs = dict(queries.fetch_rows(con, "SELECT kind, count(*) FROM runs GROUP BY 1"))
    assert runs["generation"] == 1 and runs["training"] == 1 and runs["scoring"] == 1

    started = time.perf_counter()
    again = run_demo(store, DemoSettings(work_dir=tmp_path / "demo", policy=str(tiny_model_dir), n=2,
                                         max_new_tokens=8, epochs=1.0, min_margin=0.0), progress=False)
    assert time.perf_counter() - started < 30
    assert store_stats(store)["responses"] == 150 and store_stats(store)["scores"] == stats["scores"]
    assert again["rm"]["rm_id"] == result["rm"]["rm_id"]
    with store.connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM prompts WHERE source = ?", [DEMO_SOURCE]) == 75
