"""`workbench score`: score stored responses with a reward model, into the store.

Work proceeds in chunks of responses the model has not scored yet; each chunk is scored
(length-sorted and packed by the engine) and committed on its own, so an interrupted run loses
at most one chunk and the same command resumes where it stopped. What is left is listed once per
run, as ids and row numbers (`pending_chunks`); each chunk then reads its texts by row. With
`shard=(rank, world)` several processes split the responses by id and every score lands exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pyarrow as pa

from engine.data import ScoringItem
from engine.progress import progress_bar
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.generate.finite_scores import require_finite
from workbench.models.registered_model import RegisteredModel
from workbench.models.reward_models import resolve_reward_model
from workbench.store.runs import recorded_run
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries


@dataclass
class ScoreResult:
    run_id: str
    rm: str
    scored: int
    already_scored: int
    selected: int
    seconds: float
    responses_per_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def score_responses(store: Store, rm: str, *, selection: PromptSelection | None = None,
                    generation_run: str | None = None, chunk_size: int = 1024, max_tokens_per_batch: int = 8192,
                    max_length: int = 2048, precision: str = "auto", shard: tuple[int, int] = (0, 1),
                    scorer=None, progress: bool = True, trust_remote_code: bool = False) -> ScoreResult:
    """Score every selected response the reward model has not scored yet.

    `trust_remote_code` lets a reward model that ships its own Python code (InternLM2) run it.
    """
    selection = selection or PromptSelection()
    rank, world = shard
    if not 0 <= rank < world:
        raise WorkbenchError(f"shard rank {rank} is outside 0..{world - 1}")
    model = resolve_reward_model(store, rm, trust_remote_code=trust_remote_code)
    model.require_weights()
    from engine.precision import resolve_precision
    from engine.scoring import scoring_device

    precision = resolve_precision(precision, scoring_device())  # recorded: scores differ between the two
    if scorer is None:  # checked before any work; a given scorer (tests) brings its own weights
        load = model.scorer_loader(max_length=max_length, precision=precision, trust_remote_code=trust_remote_code)
    config = {"rm": model.as_reference(),
              "selection": selection.as_dict(), "generation_run": generation_run, "max_length": max_length,
              "precision": precision}
    run_id = ids.run_id("scoring", config)
    with recorded_run(store, run_id, "scoring", config | {"shards": world}):
        with store.connect() as con:
            selected, already = queries.count_scored(con, model.rm_id, selection.as_dict(), generation_run)
        started = time.perf_counter()
        scored = 0
        with progress_bar(selected, f"scoring with {model.label}", unit=" responses", enabled=progress,
                          initial=already) as bar:
            for chunk in pending_chunks(store, model.rm_id, selection, generation_run, shard, chunk_size):
                scorer = scorer or load()  # loaded once there is work
                reported = bar.n  # a bar update per batch within the chunk
                scored += _score_chunk(store, scorer, chunk, model, run_id, max_tokens_per_batch,
                                       lambda done, total, start=reported: bar.update(start + done - bar.n))
                bar.update(reported + chunk.num_rows - bar.n)
        seconds = time.perf_counter() - started
        result = ScoreResult(run_id, model.label, scored, already, selected, round(seconds, 2),
                             round(scored / seconds, 2) if seconds > 0 else 0.0)
        # The run stays running (summary None) until the last shard to finish closes it.
        store.write(lambda con: _close_if_complete(con, run_id, model.rm_id, selection, generation_run))
    return result


def pending_chunks(store: Store, rm_id: str, selection: PromptSelection, generation_run: str | None,
                   shard: tuple[int, int], chunk_size: int) -> Iterator[pa.Table]:
    """The responses this shard has to score, in chunks of `chunk_size` in table order (columns
    response_id, prompt_id, text, messages); no connection is held between chunks.

    Asking the store for "the next chunk not scored yet" each time scanned and sorted every unscored
    reply with its text: quadratic in the store's size, and beyond DuckDB's memory cap at ten million
    replies. So the list is read once, without texts, and each chunk fetches its rows by number.
    """
    if chunk_size < 1:
        raise WorkbenchError("--chunk-size must be at least 1")
    with store.connect() as con:
        listed = queries.unscored_rows(con, rm_id, selection.as_dict(), generation_run, shard)
    for start in range(0, listed.num_rows, chunk_size):
        with store.connect() as con:
            chunk = queries.responses_at_rows(con, listed.slice(start, chunk_size))
        if chunk.num_rows:
            yield chunk


def _score_chunk(store: Store, scorer, chunk: pa.Table, model: RegisteredModel, run_id: str, max_tokens_per_batch: int,
                 progress=None) -> int:
    """Score one chunk and store the scores (a non-finite score refuses the chunk); returns how many were new.
    `progress(done, total)` hears after each batch."""
    columns = chunk.to_pydict()
    items = [ScoringItem(json.loads(m), text) for m, text in zip(columns["messages"], columns["text"])]
    values = require_finite(scorer.score(items, max_tokens_per_batch=max_tokens_per_batch, progress=progress),
                            [f"response {r}" for r in columns["response_id"]], f"reward model {model.label}")
    rm_id = model.rm_id
    table = pa.table({"response_id": chunk["response_id"], "rm_id": pa.array([rm_id] * chunk.num_rows, pa.string()),
                      "score": pa.array(values, pa.float64()),
                      "run_id": pa.array([run_id] * chunk.num_rows, pa.string())})
    return store.write(lambda con: queries.insert_new(con, "scores", table, same={"rm_id": rm_id}))


def _close_if_complete(con, run_id: str, rm_id: str, selection: PromptSelection, generation_run: str | None) -> None:
    total, done = queries.count_scored(con, rm_id, selection.as_dict(), generation_run)
    if done == total:
        queries.finish_run(con, run_id, "completed", {"scored": done, "selected": total})
