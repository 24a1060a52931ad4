"""A small store for human review: 12 prompts with 3 replies each, scored by two imported scorers that
disagree on some prompts (rm-a, rm-b), and rm-a's best-vs-worst pairs."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.curate.pairs import build_pairs
from workbench.ingest.importer import import_files
from workbench.store import Store

PROMPTS = 12


def _bon(directory: Path, name: str, flip_every: int | None) -> Path:
    records = []
    for i in range(PROMPTS):
        replies = [f"Reply {j} to question {i}: " + "detail " * (2 + 3 * j) for j in range(3)]
        scores = [float(j) + 0.1 * i for j in range(3)]
        if flip_every and i % flip_every == 0:
            scores = scores[::-1]
        records.append({"prompt": f"Question {i}: how should a reward model be checked?", "responses": replies,
                        "scores": scores})
    path = directory / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_review_store(directory: Path, name: str = "review.duckdb") -> Store:
    store = Store(directory / name, timeout=30)
    import_files(store, [_bon(directory, "rm-a", None)], fmt="bon", source="qa", score_name="rm-a", progress=False)
    import_files(store, [_bon(directory, "rm-b", 3)], fmt="bon", source="qa", score_name="rm-b", progress=False)
    build_pairs(store, "rm-a", "best-vs-worst", progress=False)
    return store


def table_counts(store: Store) -> dict:
    """Row counts of the tables review writes (what "store unchanged" compares)."""
    with store.connect() as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("review_items", "review_labels", "pairs", "reward_models", "runs")}
