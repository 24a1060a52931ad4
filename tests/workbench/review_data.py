"""A small store for human review: 12 prompts with 3 replies each, scored by two imported scorers that
disagree on some prompts (rm-a, rm-b), and rm-a's best-vs-worst pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def review_template(tmp_path_factory) -> Path:
    """The review store built once per session (tests get copies: building it takes two imports)."""
    store = make_review_store(tmp_path_factory.mktemp("review-template"))
    return store.path


@pytest.fixture
def store(review_template, tmp_path) -> Store:
    """A fresh copy of the review store in this test's directory."""
    shutil.copy(review_template, tmp_path / "review.duckdb")
    return Store(tmp_path / "review.duckdb", timeout=30)


def write_votes(store: Store, queue: str, keys: dict[str, str], tmp_path: Path) -> None:
    """Label the queue's items in order in one go, through `review import`: keys[annotator] holds one
    of 1 (left better), 2 (right better), t, b per item, each annotator's left/right as the app shows it."""
    from workbench.review.queue import shown_order
    from workbench.review.transfer import export_review, import_review

    path = tmp_path / f"{queue}-votes.jsonl"
    export_review(store, path, queue)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for n, line in enumerate(lines):
        first, second = line["first"]["response_id"], line["second"]["response_id"]
        for annotator, pressed in keys.items():
            left, right = shown_order(line["item_id"], annotator, first, second)
            key = pressed[n]
            line["labels"].append({"annotator": annotator, "verdict": "better" if key in "12" else
                                   {"t": "tie", "b": "both-bad"}[key],
                                   "preferred_id": left if key == "1" else right if key == "2" else None,
                                   "left_id": left, "right_id": right, "note": None, "labeled_at": None})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    import_review(store, path)
