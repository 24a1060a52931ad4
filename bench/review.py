"""Benchmark: human review on a store of synthetic scored replies (no model): how long filling a queue
from each source takes, how long one label takes (next item + store the label, as the app does per key
press), the agreement report, and `pairs build --labels human-first` against the plain `pairs build`
on the same store (the baseline). Prints one JSON object.

    python bench/review.py
    python bench/review.py --prompts 5000 --labels 400

Every labeler here is an imported scorer: rm-a, and rm-b, which reverses rm-a on every third prompt.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path


def _bon(path: Path, prompts: int, replies: int, flip_every: int | None, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(prompts):
            scores = [rng.gauss(0, 1) + j for j in range(replies)]
            if flip_every and i % flip_every == 0:
                scores = scores[::-1]
            out.write(json.dumps({"prompt": f"Question {i}: what should the model say?",
                                  "responses": [f"Reply {j} to {i}: " + "word " * (3 + j) for j in range(replies)],
                                  "scores": scores}) + "\n")
    return path


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--replies", type=int, default=4)
    parser.add_argument("--labels", type=int, default=200, help="labels stored one by one (two annotators)")
    args = parser.parse_args()

    from workbench.curate.human_first import build_human_first_pairs
    from workbench.curate.pairs import build_pairs
    from workbench.ingest.importer import import_files
    from workbench.review.agreement import agreement_report
    from workbench.review.queue import SOURCES, fill_queue, next_item, record_label
    from workbench.store import Store

    directory = Path(tempfile.mkdtemp(prefix="review-bench-"))
    store = Store(directory / "bench.duckdb")
    for name, flip in (("rm-a", None), ("rm-b", 3)):
        import_files(store, [_bon(directory / f"{name}.jsonl", args.prompts, args.replies, flip, 0)], fmt="bon",
                     source="bench", score_name=name, progress=False)
    build_pairs(store, "rm-a", "best-vs-worst", progress=False)

    fills = {}
    for source in SOURCES:
        result, seconds = _timed(lambda: fill_queue(store, source, source, size=500, overlap=2))
        fills[source] = {"added": result.added, "seconds": round(seconds, 4)}

    per_label = []
    rng = random.Random(1)
    for n in range(args.labels):
        who = ("alice", "bob")[n % 2]
        start = time.perf_counter()
        item = next_item(store, "random-audit", who)
        record_label(store, item.item_id, who, rng.choice(("left", "right", "tie", "both-bad")), item.left_id,
                     item.right_id)
        per_label.append(time.perf_counter() - start)

    report, agreement_s = _timed(lambda: agreement_report(store))  # includes importing scikit-learn
    _, agreement_again_s = _timed(lambda: agreement_report(store))
    _, plain_s = _timed(lambda: build_pairs(store, "rm-a", "top-k", k=2, progress=False))
    human_first, human_first_s = _timed(lambda: build_human_first_pairs(store, "rm-a", "top-k", k=2, progress=False))
    print(json.dumps({
        "prompts": args.prompts, "replies": args.replies, "pairs": args.prompts,
        "fill_queue_500": fills,
        "label_seconds": {"labels": args.labels, "median": round(statistics.median(per_label), 4),
                          "p90": round(sorted(per_label)[int(0.9 * len(per_label))], 4)},
        "agreement": {"first_seconds": round(agreement_s, 4), "again_seconds": round(agreement_again_s, 4), "votes": report["between_annotators"]["votes"],
                      "kappa": report["between_annotators"]["value"]},
        "pairs_build_top_k2": {"plain_seconds": round(plain_s, 4), "human_first_seconds": round(human_first_s, 4),
                               "human_first": {"pairs": human_first.candidates, "flipped": human_first.flipped,
                                               "dropped": human_first.dropped, "confirmed": human_first.confirmed}},
    }, indent=2))


if __name__ == "__main__":
    main()
