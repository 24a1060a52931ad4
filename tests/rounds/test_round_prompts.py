"""Which prompts a round claims: never a prompt `workbench dedup` flagged as repeating another, nor the
prompt a used one repeats, so a near duplicate of an evaluation prompt never becomes a training
prompt. The round's own claim (`open_round`) on a real store; no sampling, no DPO."""

import random

import pytest

from tests.workbench.conftest import write_jsonl
from workbench.curate.dedup import find_duplicate_prompts
from workbench.curate.pair_filter import PairFilter
from workbench.dpo.rounds import RoundConfig, open_round
from workbench.errors import WorkbenchError
from workbench.ingest.importer import import_files
from workbench.store import Store, queries

VOCAB = [f"word{i}" for i in range(300)]


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "rounds.duckdb", timeout=10)


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(30))


def _near(text: str) -> str:
    """The same prompt with its last word changed: word 3-gram Jaccard 27/29 = 0.93."""
    return text.rsplit(" ", 1)[0] + " changed"


def _import(store, tmp_path, name: str, prompts: list[str]) -> None:
    import_files(store, [write_jsonl(tmp_path / f"{name}.jsonl", [{"prompt": p} for p in prompts])], fmt="prompts",
                 source="pool", progress=False)


def _ids(store, texts) -> set[str]:
    with store.connect() as con:
        return {p for (p,) in queries.fetch_rows(con, "SELECT prompt_id FROM prompts WHERE list_contains(?, text)",
                                                 [list(texts)])}


def _flagged(store) -> dict[str, str]:
    with store.connect() as con:
        return dict(queries.fetch_rows(con, "SELECT prompt_id, duplicate_of FROM prompt_duplicates"))


def _claimed(store, number: int, role: str) -> set[str]:
    with store.connect() as con:
        return set(queries.round_prompt_ids(con, number, role))


def _open(store, prompts: int, eval_prompts: int = 3) -> int:
    config = RoundConfig(rm="rm", source="pool", prompts=prompts, eval_prompts=eval_prompts)
    number, _ = open_round(store, config, {}, PairFilter())
    # the round done, so that the next call opens a new one
    store.write(lambda con: queries.update_round(con, number, "evaluated", policy_out=f"p{number}"))
    return number


def test_a_round_never_claims_a_prompt_dedup_flagged(store, tmp_path):
    rng = random.Random(3)
    originals = [_sentence(rng) for _ in range(8)]
    _import(store, tmp_path, "first", originals)
    repeats = [originals[0].upper(), _near(originals[1]), _near(originals[2]), originals[3] + "!"]
    _import(store, tmp_path, "later", repeats)
    report = find_duplicate_prompts(store, near=0.8)
    assert (report.exact, report.near) == (2, 2) and set(_flagged(store)) == _ids(store, repeats)
    with pytest.raises(WorkbenchError, match="only 5 prompts of the pool are fresh"):
        _open(store, prompts=6)  # 8 unflagged prompts: 3 to evaluate, 5 to train; the refusal changes nothing
    assert not _claimed(store, 1, "eval")
    _open(store, prompts=5)
    assert _claimed(store, 1, "eval") | _claimed(store, 1, "train") == _ids(store, originals)


def test_a_near_duplicate_of_an_evaluation_prompt_is_never_a_training_prompt(store, tmp_path):
    """Dedup after round 1: an evaluation prompt turns out to repeat, or to be repeated by, other
    prompts of the pool; round 2 trains on none of them."""
    rng = random.Random(5)
    originals = [_sentence(rng) for _ in range(10)]
    _import(store, tmp_path, "first", originals)
    _import(store, tmp_path, "later", [_near(t) for t in originals])  # each repeats its original
    _open(store, prompts=1, eval_prompts=8)  # before any dedup: the first 8 by id
    evaluated, trained = _claimed(store, 1, "eval"), _claimed(store, 1, "train")
    find_duplicate_prompts(store, near=0.8)
    flagged = _flagged(store)
    assert len(flagged) == 10
    # the case this test is about: evaluation prompts whose twin (either way) was not claimed
    twins = {a: b for a, b in flagged.items()} | {b: a for a, b in flagged.items()}
    unclaimed_twins = {twins[p] for p in evaluated} - evaluated - trained
    assert unclaimed_twins and any(p in flagged for p in evaluated) and any(p not in flagged for p in evaluated)
    with store.connect() as con:
        fresh = set(queries.fresh_prompt_ids(con, "pool", None, True, 100))
        assert fresh and not fresh & unclaimed_twins and not fresh & set(flagged)
        # the safety net behind it names the evaluation prompt a training prompt would repeat
        some = sorted(unclaimed_twins)[0]
        assert queries.duplicated_round_prompts(con, [some, *sorted(fresh)], "eval") == {some: twins[some]}
    _open(store, prompts=len(fresh))
    assert _claimed(store, 2, "train") == fresh
    with pytest.raises(WorkbenchError, match="only 0 prompts of the pool are fresh"):
        _open(store, prompts=1)
