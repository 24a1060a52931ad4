"""`serve --log-to-store`: every scored (prompt, reply, reward) lands in the store as a rollout.

Scoring only appends to an in-memory list; a writer thread commits what has accumulated every
`flush_s` seconds as one transaction (prompts, replies and scores together), opening the store
file only for that moment so the app and the CLI keep using it. A SIGKILL therefore loses at most
the rows scored since the last commit and never leaves part of a batch.

Provenance: the rows of one server start and one client-supplied `step` form one `rollout` run
whose config names the reward model, the server start and the step. Each reply's id is the
generated-response id of (run, prompt, sequence number in this server), so replies that repeat
a text stay separate rollouts, and a batch written twice adds nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pyarrow as pa

from workbench import ids
from workbench.store.provenance import environment
from workbench.models.registered_model import RegisteredModel
from workbench.store import Store, queries
from workbench.store import rollouts as sql

log = logging.getLogger(__name__)
ROLLOUT_SOURCE = "rollout"


@dataclass(frozen=True)
class Rollout:
    messages: list[dict]
    reply: str
    score: float
    step: int | None


class RolloutLog:
    """Batched, non-blocking writes of scored rollouts to the store (see the module docstring)."""

    def __init__(self, store: Store, rm: RegisteredModel, server: dict, *, flush_s: float = 0.5, max_rows: int = 4096):
        self.store, self.rm, self.server = store, rm, server
        self.flush_s, self.max_rows = flush_s, max_rows
        self.logged = 0
        self.failures = 0
        self._pending: list[tuple[int, Rollout]] = []
        self._next = 0
        self._runs: dict[int | None, str] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="rollout-log", daemon=True)
        self._thread.start()

    def run_id(self, step: int | None) -> str:
        return ids.run_id("rollout", self._config(step))

    def _config(self, step: int | None) -> dict:
        return {"rm": self.rm.as_reference(), "server": self.server, "step": step}

    def add(self, rollouts: list[Rollout]) -> None:
        """Queue rollouts for the next commit; never waits for the store."""
        with self._cond:
            for rollout in rollouts:
                self._pending.append((self._next, rollout))
                self._next += 1
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self, timeout: float = 60.0) -> None:
        """Commit everything queued, mark this server's runs completed, stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        runs = list(self._runs.values())
        if self._pending:
            log.warning("rollout log: %d scored rollouts could not be written to %s", len(self._pending), self.store.path)
        if runs:
            def finish(con):
                sql.finish_rollout_runs(con, runs, sql.rollout_counts(con, runs))
            try:
                self.store.write(finish)
            except Exception as error:  # the runs stay 'running'; their rollouts are stored
                log.warning("rollout log: could not mark the rollout runs completed: %s", error)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
            if not self._closing:
                time.sleep(self.flush_s)  # let a batch accumulate; the file stays free meanwhile
            with self._cond:
                batch, self._pending = self._pending[:self.max_rows], self._pending[self.max_rows:]
            try:
                self._write(batch)
                self.failures = 0
            except Exception as error:  # the store is busy or broken: keep the rows, retry later
                self.failures += 1
                log.warning("rollout log: %s; %d rows kept for the next attempt", error, len(batch))
                with self._cond:
                    self._pending[:0] = batch
                if self._closing and self.failures > 3:
                    return
                time.sleep(min(5.0, self.flush_s * 2 ** min(self.failures, 4)))

    def _write(self, batch: list[tuple[int, Rollout]]) -> None:
        runs = {}
        for _, rollout in batch:
            if rollout.step not in self._runs:
                runs[self.run_id(rollout.step)] = self._config(rollout.step)
        tables, known = _tables(batch, self.rm.rm_id, self.run_id)

        def write(con) -> int:
            sql.ensure_rollout_runs(con, runs, environment())
            added = sql.insert_rollout_batch(con, *tables)
            _flag_rollouts(con, tables[1]["response_id"].to_pylist())
            return added

        added = self.store.write(write)
        for _, rollout in batch:
            self._runs.setdefault(rollout.step, self.run_id(rollout.step))
        self.logged += added


def _tables(batch: list[tuple[int, Rollout]], rm_id: str, run_of) -> tuple[tuple[pa.Table, pa.Table, pa.Table], int]:
    prompts: dict[str, tuple[str, list[dict], str]] = {}
    rows = {k: [] for k in ("response_id", "prompt_id", "text", "run_id", "sample_index", "n_chars", "score")}
    for seq, rollout in batch:
        prompt_id = ids.prompt_id(rollout.messages)
        run_id = run_of(rollout.step)
        prompts.setdefault(prompt_id, (ids.canonical_messages(rollout.messages), rollout.messages, run_id))
        for name, value in zip(rows, (ids.generated_response_id(run_id, prompt_id, seq), prompt_id, rollout.reply,
                                      run_id, seq, len(rollout.reply), rollout.score)):
            rows[name].append(value)
    n = len(prompts)
    prompt_table = pa.table({
        "prompt_id": pa.array(list(prompts), pa.string()),
        "messages": pa.array([m for m, _, _ in prompts.values()], pa.string()),
        "text": pa.array([_last_user_text(messages) for _, messages, _ in prompts.values()], pa.string()),
        "source": pa.array([ROLLOUT_SOURCE] * n, pa.string()),
        "tags": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
        "run_id": pa.array([r for _, _, r in prompts.values()], pa.string()),
    })
    m = len(rows["response_id"])
    responses = pa.table({
        "response_id": pa.array(rows["response_id"], pa.string()), "prompt_id": pa.array(rows["prompt_id"], pa.string()),
        "text": pa.array(rows["text"], pa.string()), "origin": pa.array(["generated"] * m, pa.string()),
        "run_id": pa.array(rows["run_id"], pa.string()), "sample_index": pa.array(rows["sample_index"], pa.int32()),
        "n_chars": pa.array(rows["n_chars"], pa.int32()),
    })
    scores = pa.table({"response_id": responses["response_id"], "rm_id": pa.array([rm_id] * m, pa.string()),
                       "score": pa.array(rows["score"], pa.float64()), "run_id": responses["run_id"]})
    return (prompt_table, responses, scores), n


def _flag_rollouts(con, response_ids: list[str]) -> None:
    """Near-duplicate and repetition flags, as sampling sets them, over each (run, prompt)'s
    replies, re-computed for the groups the batch added to (a later reply can repeat an earlier one).
    Rollouts have no max-new-tokens here, so truncation stays unknown (false)."""
    from itertools import groupby

    from engine.signals import is_looping, near_duplicates  # pure Python, no torch

    flagged = {"response_id": [], "near_duplicate_of": [], "truncated": [], "repetition": []}
    for _, group in groupby(sql.rollout_replies(con, response_ids), key=lambda row: (row[1], row[2])):
        group = list(group)
        for (response_id, _, _, text), duplicate in zip(group, near_duplicates([row[3] for row in group])):
            flagged["response_id"].append(response_id)
            flagged["near_duplicate_of"].append(None if duplicate is None else group[duplicate][0])
            flagged["truncated"].append(False)
            flagged["repetition"].append(is_looping(text))
    queries.set_response_flags(con, pa.table({
        "response_id": pa.array(flagged["response_id"], pa.string()),
        "near_duplicate_of": pa.array(flagged["near_duplicate_of"], pa.string()),
        "truncated": pa.array(flagged["truncated"], pa.bool_()),
        "repetition": pa.array(flagged["repetition"], pa.bool_())}))


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return messages[-1]["content"] if messages else ""
