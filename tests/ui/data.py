"""A small store with everything the app shows: human pairs, scored Best-of-N replies of varied
length (reward model "ext"), RM pairs, a tie, Best-of-N picks and curation flags."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa

from workbench.ingest.importer import import_files
from workbench.curate.pairs import build_pairs
from workbench.store import Store, queries

WORDS = "the model answers clearly and politely with some detail about safety data and reward".split()


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_store(directory: Path, prompts: int = 30, n: int = 4, seed: int = 0) -> Store:
    """Build the store in `directory`/app.duckdb and return it."""
    rng = random.Random(seed)
    store = Store(directory / "app.duckdb", timeout=30)
    human = [{"prompt": f"How do I keep my plants alive, question {i}?", "chosen": f"Water them weekly ({i}).",
              "rejected": "No idea."} for i in range(6)]
    import_files(store, [_write(directory / "human.jsonl", human)], source="garden", tags=["human"], progress=False)
    bon = []
    for i in range(prompts):
        replies = [" ".join(rng.choices(WORDS, k=rng.randint(3, 40))) + f" ({i}.{j})" for j in range(n)]
        # scores grow with length (a length-biased reward model) plus noise
        scores = [round(len(r) / 40 + rng.gauss(0, 0.5), 3) for r in replies]
        bon.append({"prompt": f"Explain topic {i}: why does reward modelling need care?", "responses": replies,
                    "scores": scores})
    bon.append({"prompt": "A prompt whose replies all tie", "responses": ["same a", "same b", "same c"],
                "scores": [1.0, 1.0, 1.0]})
    bon.append({"prompt": "Show <b>markup</b> & <script>alert('x')</script>", "responses":
                ["<script>alert('reply')</script> plain", "a <i>short</i> one"], "scores": [2.0, 0.5]})
    result = import_files(store, [_write(directory / "bon.jsonl", bon)], fmt="bon", source="bon-demo",
                          tags=["synthetic"], score_name="ext", progress=False)
    build_pairs(store, "ext", "best-vs-worst", progress=False)
    with store.connect() as con:
        rm_id = queries.find_reward_models(con, "ext")[0].rm_id
        some = queries.fetch_rows(con, "SELECT response_id FROM responses WHERE run_id = ? ORDER BY response_id LIMIT 12",
                            [result.run_id])
    ids = [r[0] for r in some]
    flags = pa.table({"response_id": pa.array(ids, pa.string()),
                      "near_duplicate_of": pa.array([None] * 8 + ids[:4], pa.string()),
                      "truncated": pa.array([i % 3 == 0 for i in range(12)]),
                      "repetition": pa.array([i % 4 == 1 for i in range(12)])})
    store.write(lambda con: queries.set_response_flags(con, flags))
    store.write(lambda con: queries.insert_bon_picks(con, rm_id, result.run_id))
    return store
