"""`workbench dedup`: exact and near duplicate prompts, MinHash-LSH in SQL checked against brute force."""

import json
import random
import re

import pytest
from click.testing import CliRunner

from tests.workbench.conftest import write_jsonl
from cli import load_commands
from workbench.curate.dedup import find_duplicate_prompts
from workbench.ingest.importer import import_files
from workbench.store import queries

LONG = ("please write a short friendly letter to my neighbour asking whether they could water the plants "
        "on the balcony while we are away")


def _flags(store) -> dict:
    with store.connect() as con:
        rows = queries.fetch_rows(con, """SELECT p.text, o.text, d.kind FROM prompt_duplicates d
            JOIN prompts p ON p.prompt_id = d.prompt_id JOIN prompts o ON o.prompt_id = d.duplicate_of""")
    return {text: (original, kind) for text, original, kind in rows}


def test_exact_and_near_duplicates_name_the_earlier_prompt(store, tmp_path):
    first = [{"prompt": "Hello, World! How are you today?"}, {"prompt": LONG}, {"prompt": "Tell me a joke."}]
    later = [{"prompt": "hello world -- how ARE you today"},
             {"prompt": LONG.replace("friendly", "polite")},  # one word of 22 changed: 3-gram Jaccard 0.74
             {"prompt": "Explain how tides work."}]
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", first)], source="round-1", progress=False)
    import_files(store, [write_jsonl(tmp_path / "b.jsonl", later)], source="round-2", progress=False)
    report = find_duplicate_prompts(store, near=0.8)
    assert (report.exact, report.near) == (1, 0)
    assert _flags(store) == {"hello world -- how ARE you today": ("Hello, World! How are you today?", "exact")}
    report = find_duplicate_prompts(store, near=0.7)  # a rerun replaces the flags
    assert (report.exact, report.near, report.prompts) == (1, 1, 6)
    assert _flags(store)[LONG.replace("friendly", "polite")] == (LONG, "near")


def _jaccard(a: str, b: str) -> float:
    def shingles(text):
        words = re.findall(r"\w+", text.lower())
        return {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}

    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def test_lsh_finds_what_brute_force_finds_and_nothing_below_the_threshold(store, tmp_path):
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(400)]
    bases = [" ".join(rng.choice(vocab) for _ in range(30)) for _ in range(40)]
    prompts = list(bases)
    for base in bases[:30]:  # variants with 0-6 words replaced
        words = base.split()
        for i in rng.sample(range(30), rng.randint(0, 6)):
            words[i] = rng.choice(vocab)
        prompts.append(" ".join(words))
    import_files(store, [write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in prompts])], progress=False)
    find_duplicate_prompts(store, near=0.6)
    flags = _flags(store)
    for text, (original, kind) in flags.items():
        assert _jaccard(text, original) >= 0.6 - 1e-9 or kind == "exact"
    # every later prompt with an earlier one at similarity >= 0.75 is flagged (LSH misses such a pair with
    # probability < 1e-4 each; the hash is deterministic, so this is a fixed check, not a flaky one)
    with store.connect() as con:
        order = [t for (t,) in queries.fetch_rows(con, "SELECT text FROM prompts ORDER BY created_at, prompt_id")]
    expected = {later for i, later in enumerate(order) if any(_jaccard(later, e) >= 0.75 for e in order[:i])}
    assert expected and expected <= set(flags)


def test_cli_json(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Same words."}, {"prompt": "same WORDS"}])],
                 progress=False)
    result = CliRunner().invoke(load_commands(), ["--db", str(store.path), "dedup", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["exact"] == 1
