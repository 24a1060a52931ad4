"""`workbench score`: score stored responses with a reward model, into the store.

Work proceeds in chunks of responses the model has not scored yet; each chunk is scored
(length-sorted and packed by the engine) and committed on its own, so an interrupted run loses
at most one chunk and the same command resumes where it stopped. With `shard=(rank, world)`
several processes split the responses by id and every score lands exactly once.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import pyarrow as pa
from tqdm.auto import tqdm

from engine.data import ScoringItem
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.reward_models import describe, load_registered_scorer, resolve_reward_model
from workbench.runs import fail_run, start_run
from workbench.selection import PromptSelection
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


def scoring_device(device: str = "auto") -> str:
    """auto = this process's GPU (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    import os

    import torch

    if device == "auto":
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    return device


def load_scorer(path: str, max_length: int = 2048, precision: str = "auto", device: str = "auto", spec=None,
                trust_remote_code: bool = False):
    """A Scorer for the reward model at `path` (see `scoring_device` and `engine.precision`).

    `spec` (an `engine.rm_formats.RewardFormat`) says how to read it; by default its format is detected.
    """
    from engine.foreign_rm import load_reward_model
    from engine.rm_formats import inspect_reward_model
    from engine.scoring import Scorer

    if spec is None:
        spec = inspect_reward_model(path, trust_remote_code=trust_remote_code)
    model = load_reward_model(path, spec, device=scoring_device(device), trust_remote_code=trust_remote_code)
    return Scorer(model, max_length=max_length, precision=precision)


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
    if not model["path"]:
        raise WorkbenchError(f"reward model {describe(model)} has no weights here (its scores were imported)")
    from engine.precision import resolve_precision

    precision = resolve_precision(precision, scoring_device())  # recorded: scores differ between the two
    config = {"rm": {"rm_id": model["rm_id"], "name": model["name"], "version": model["version"]},
              "selection": selection.as_dict(), "generation_run": generation_run, "max_length": max_length,
              "precision": precision}
    run_id = ids.run_id("scoring", config)
    start_run(store, run_id, "scoring", config | {"shards": world})
    with store.connect() as con:
        selected, already = queries.count_scored(con, model["rm_id"], selection.as_dict(), generation_run)
    started = time.perf_counter()
    scored = 0
    bar = tqdm(total=selected, initial=already, unit=" responses", desc=f"scoring with {describe(model)}",
               disable=not progress, smoothing=0.1)
    try:
        while True:
            with store.connect() as con:
                chunk = queries.responses_to_score(con, model["rm_id"], selection.as_dict(), generation_run,
                                                   (rank, world), chunk_size)
            if not chunk.num_rows:
                break
            scorer = scorer or load_registered_scorer(model, max_length=max_length, precision=precision,
                                                      trust_remote_code=trust_remote_code)  # with work
            columns = chunk.to_pydict()
            items = [ScoringItem(json.loads(m), text) for m, text in zip(columns["messages"], columns["text"])]
            values = scorer.score(items, max_tokens_per_batch=max_tokens_per_batch)
            table = pa.table({"response_id": chunk["response_id"],
                              "rm_id": pa.array([model["rm_id"]] * chunk.num_rows, pa.string()),
                              "score": pa.array(values, pa.float64()),
                              "run_id": pa.array([run_id] * chunk.num_rows, pa.string())})
            scored += store.write(lambda con, t=table: queries.insert_new(con, "scores", t))
            bar.update(chunk.num_rows)
    except BaseException as error:
        fail_run(store, run_id, error)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    result = ScoreResult(run_id, describe(model), scored, already, selected, round(seconds, 2),
                         round(scored / seconds, 2) if seconds > 0 else 0.0)

    def finish(con) -> None:
        total, done = queries.count_scored(con, model["rm_id"], selection.as_dict(), generation_run)
        if done == total:  # the last shard to finish closes the run
            queries.finish_run(con, run_id, "completed", {"scored": done, "selected": total})

    store.write(finish)
    return result
