"""Benchmark: duplicate prompts found by `workbench dedup` (MinHash-LSH in DuckDB SQL) beside the
`datasketch` library's MinHashLSH on the same prompts and the same parameters. Prints one JSON object.

    python bench/dedup_vs_datasketch.py                      # 50,000 synthetic prompts
    python bench/dedup_vs_datasketch.py --prompts 5000       # a quick look

Both sides do the same job, from prompts in a store to each repeat's original: the same normalised
words (the store's normalisation, re-done in Python for datasketch and checked equal on every
prompt), exact duplicates first, then near duplicates among the rest by word 3-gram shingles,
MinHash with 64 permutations cut into 16 bands of 4 rows (`workbench.curate.dedup.BANDS/ROWS`),
every candidate verified by its exact Jaccard similarity against `--near`, the most similar
earlier prompt named. The workbench's time is `find_duplicate_prompts` end to end (it also writes
the flags and records a run); datasketch's starts from reading the prompts out of the store and
stops at the flags in memory. DuckDB runs once on one thread (datasketch is single-threaded
Python) and once on every core; the ratio is measured within one run.

The synthetic prompts: 20-60 words from a 3,000-word vocabulary; 4% are exact repeats of an earlier
prompt (re-cased, re-punctuated), 8% near repeats (1 to 4 words replaced: some above the threshold,
some under). Agreement: the two flagged sets, and each side's recall of the planted near repeats
whose exact similarity reaches the threshold (LSH may miss a pair; neither side flags a false one).

Needs `datasketch` (in the `test` extra); without it the script prints {"skipped": ...} and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHINGLE_WORDS = 3
_NON_WORD = re.compile(r"[\W_]+")


def make_prompts(count: int, seed: int = 0) -> tuple[list[str], dict[int, int]]:
    """Prompts in import order, and planted near repeats: index -> index of the prompt it copies."""
    rng = random.Random(seed)
    vocab = [f"{rng.choice('bcdfghklmnprst')}{rng.choice('aeiou')}{rng.choice('lnrst')}{i}" for i in range(3000)]
    prompts, near = [], {}
    for i in range(count):
        roll = rng.random()
        if i > 10 and roll < 0.04:  # an exact repeat, differently cased and punctuated
            prompts.append(prompts[rng.randrange(i)].upper().replace(" ", ", ", 1) + "!!")
        elif i > 10 and roll < 0.12:
            source = rng.randrange(i)
            words = prompts[source].rstrip("?").split()
            for k in rng.sample(range(len(words)), min(len(words), rng.randint(1, 4))):
                words[k] = rng.choice(vocab)
            prompts.append(" ".join(words) + "?")
            near[i] = source
        else:
            prompts.append(" ".join(rng.choices(vocab, k=rng.randint(20, 60))) + "?")
    return prompts, near


def normalise(text: str) -> str:
    """The store's normalisation (`queries.contamination.words_sql`) in Python: accents stripped,
    lower case, every run of non-letters/digits a word break."""
    stripped = text.lower()
    if not stripped.isascii():  # the per-character pass only where there can be accents
        stripped = "".join(c for c in unicodedata.normalize("NFKD", stripped) if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", stripped).split())


def shingles(norm: str) -> set[str]:
    words = norm.split()
    if len(words) < SHINGLE_WORDS:
        return {norm} if norm else set()
    return {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def build_store(path: Path, prompts: list[str]):
    from workbench.ingest.importer import import_files
    from workbench.store import Store

    data = path.parent / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    store = Store(path, timeout=60)
    import_files(store, [data], fmt="prompts", source="bench", progress=False)
    return store


def stored_prompts(store) -> list[tuple[str, str]]:
    """(prompt id, text) in the order dedup names originals by (earliest first)."""
    from workbench.store import queries

    with store.connect() as con:
        return queries.fetch_rows(con, f"SELECT prompt_id, {queries.PROMPT_TEXT} FROM prompts "
                                       "ORDER BY created_at, prompt_id")


def duckdb_dedup(store, near: float, threads: int | None) -> tuple[float, dict]:
    """`workbench dedup`'s own function, timed; its flags {prompt id: (original, kind)}."""
    import duckdb

    from workbench.curate.dedup import find_duplicate_prompts
    from workbench.store import queries

    # a connection held open pins the threads setting: the store's connections share its database
    from workbench.store.connection import duckdb_config

    keeper = duckdb.connect(str(store.path), config=duckdb_config())
    keeper.execute(f"SET threads = {threads or os.cpu_count()}")
    try:
        started = time.perf_counter()
        find_duplicate_prompts(store, near=near)
        seconds = time.perf_counter() - started
        with store.connect() as con:
            used = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
            flags = {p: (o, k) for p, o, k in queries.fetch_rows(
                con, "SELECT prompt_id, duplicate_of, kind FROM prompt_duplicates")}
    finally:
        keeper.close()
    assert used == (threads or os.cpu_count()), used
    return seconds, flags


def datasketch_dedup(store, near: float, bands: int, rows: int) -> tuple[dict, dict]:
    """The same job with datasketch's MinHash and MinHashLSH; phase times and the flags."""
    from datasketch import MinHash, MinHashLSH

    times, started = {}, time.perf_counter()

    def lap(name):
        nonlocal started
        now = time.perf_counter()
        times[name] = round(now - started, 3)
        started = now

    stored = stored_prompts(store)
    lap("read")
    flags, first_of, live = {}, {}, []
    for order, (prompt_id, text) in enumerate(stored):
        norm = normalise(text)
        if not norm:
            continue
        if norm in first_of:
            flags[prompt_id] = (first_of[norm], "exact")
        else:
            first_of[norm] = prompt_id
            live.append((order, prompt_id, shingles(norm)))
    lap("normalise_exact")
    signatures = MinHash.bulk([[s.encode() for s in grams] for _, _, grams in live], num_perm=bands * rows)
    lap("minhash")
    lsh = MinHashLSH(threshold=near, num_perm=bands * rows, params=(bands, rows))
    with lsh.insertion_session() as session:
        for index, signature in enumerate(signatures):
            session.insert(index, signature, check_duplication=False)
    lap("lsh_insert")
    for index, (order, prompt_id, grams) in enumerate(live):
        best = None
        for other in lsh.query(signatures[index]):
            other_order, other_id, other_grams = live[other]
            if other_order >= order:
                continue
            similarity = jaccard(grams, other_grams)
            if similarity >= near and (best is None or (similarity, -other_order) > best[:2]):
                best = (similarity, -other_order, other_id)
        if best:
            flags[prompt_id] = (best[2], "near")
    lap("query_verify")
    times["total"] = round(sum(times.values()), 3)
    return times, flags


def agreement(ours: dict, theirs: dict, truth: set[str]) -> dict:
    def kind(flags, k):
        return {p for p, (_, kk) in flags.items() if kk == k}

    near_a, near_b = kind(ours, "near"), kind(theirs, "near")
    both = near_a & near_b
    return {"exact_flags_equal": {p: v for p, v in ours.items() if v[1] == "exact"}
                                 == {p: v for p, v in theirs.items() if v[1] == "exact"},
            "near_both": len(both), "near_only_workbench": len(near_a - near_b),
            "near_only_datasketch": len(near_b - near_a),
            "near_jaccard": round(len(both) / max(len(near_a | near_b), 1), 5),
            "same_original_when_both": round(sum(ours[p][0] == theirs[p][0] for p in both) / max(len(both), 1), 5),
            "planted_near_at_or_above_threshold": len(truth),
            "recall_workbench": round(len(truth & near_a) / max(len(truth), 1), 5),
            "recall_datasketch": round(len(truth & near_b) / max(len(truth), 1), 5)}


def planted_truth(store, prompts: list[str], planted: dict[int, int], near: float, exact: set[str]) -> set[str]:
    """For each planted near repeat whose exact similarity to its source reaches `near` (neither of the
    two an exact repeat), the later of the two in the store's order: the prompt that must be flagged."""
    stored = stored_prompts(store)
    order = {prompt_id: i for i, (prompt_id, _) in enumerate(stored)}
    by_text = {text: prompt_id for prompt_id, text in stored}
    truth = set()
    for copy, source in planted.items():
        a, b = by_text[prompts[copy]], by_text[prompts[source]]
        if a in exact or b in exact or a == b:
            continue
        if jaccard(shingles(normalise(prompts[copy])), shingles(normalise(prompts[source]))) >= near:
            truth.add(max(a, b, key=order.__getitem__))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=50_000)
    parser.add_argument("--near", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="directory for the store (default: a temporary one)")
    args = parser.parse_args()
    try:
        import datasketch
    except ImportError:
        print(json.dumps({"skipped": "datasketch is not installed: pip install datasketch (or the test extra)"}))
        return
    from workbench.curate.dedup import BANDS, ROWS
    from workbench.store import queries

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        prompts, planted = make_prompts(args.prompts, args.seed)
        store = build_store(work / "dedup.duckdb", prompts)
        with store.connect() as con:  # the Python normalisation is the store's, on every prompt
            theirs = {pid: norm for pid, norm in queries.fetch_rows(
                con, f"SELECT prompt_id, array_to_string({queries.words_sql(queries.PROMPT_TEXT)}, ' ') FROM prompts")}
        mismatches = sum(normalise(text) != theirs[pid] for pid, text in stored_prompts(store))
        one_thread, ours = duckdb_dedup(store, args.near, 1)
        all_threads, again = duckdb_dedup(store, args.near, None)
        phases, flags = datasketch_dedup(store, args.near, BANDS, ROWS)
        truth = planted_truth(store, prompts, planted, args.near, {p for p, (_, k) in ours.items() if k == "exact"})
    print(json.dumps({
        "prompts": args.prompts, "near": args.near, "bands": BANDS, "rows": ROWS, "shingle_words": SHINGLE_WORDS,
        "datasketch_version": datasketch.__version__, "cpu_count": os.cpu_count(),
        "normalisation_mismatches": mismatches,
        "seconds": {"workbench_duckdb_1_thread": round(one_thread, 3),
                    f"workbench_duckdb_{os.cpu_count()}_threads": round(all_threads, 3),
                    "datasketch": phases["total"]},
        "datasketch_phases": phases,
        "ratio_datasketch_over_duckdb_1_thread": round(phases["total"] / one_thread, 2),
        "ratio_datasketch_over_duckdb_all_threads": round(phases["total"] / all_threads, 2),
        "flags": {"workbench": {"exact": sum(k == "exact" for _, k in ours.values()),
                                "near": sum(k == "near" for _, k in ours.values())},
                  "datasketch": {"exact": sum(k == "exact" for _, k in flags.values()),
                                 "near": sum(k == "near" for _, k in flags.values())}},
        "workbench_runs_agree": ours == again,
        "agreement": agreement(ours, flags, truth),
    }, indent=2))


if __name__ == "__main__":
    main()
