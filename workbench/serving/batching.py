"""Dynamic batching: requests that arrive within `max_wait_s` of each other are scored together.

Requests are encoded as they arrive (on the web server's threads) and queued; one scoring
thread takes the oldest, then keeps taking requests until `max_wait_s` has passed since that
one arrived, `max_batch_tokens` tokens are collected or `max_batch_requests` requests. The
whole batch goes through the engine's packed scorer in one call (rows of at most
`max_batch_tokens` tokens, replies to the same prompt sharing their prefix), and each request's
future gets its own scores. The queue is bounded: `submit` raises `QueueFull` instead of
letting a backlog grow without limit (the server answers 503).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from engine.data import ScoringItem
from workbench.generate.finite_scores import first_non_finite


class QueueFull(Exception):
    """The scoring queue holds its maximum number of requests."""


class NonFiniteScore(Exception):
    """The model produced NaN or infinity for a conversation; no score is sent."""


class ScoreFuture(Future):
    """The scores of one request; `drop()` when its client has gone."""

    dropped = False

    def drop(self) -> None:
        self.dropped = True
        self.cancel()  # succeeds only while the request waits in the queue


@dataclass
class Job:
    items: list[ScoringItem]
    encoded: list[list[int]]
    step: int | None = None  # the trainer step the client sent, for the rollout log
    future: ScoreFuture = field(default_factory=ScoreFuture)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def dropped(self) -> bool:
        return self.future.dropped

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.encoded)


class DynamicBatcher:
    """One scoring thread fed by a bounded queue; `submit` returns a future of the scores."""

    def __init__(self, scorer, *, max_batch_tokens: int, max_wait_s: float, max_queue: int,
                 max_batch_requests: int = 256, on_batch: Callable[[list[Job], list[list[float]]], None] | None = None):
        self.scorer = scorer
        self.max_batch_tokens, self.max_wait_s = max_batch_tokens, max_wait_s
        self.max_batch_requests = max_batch_requests
        self.on_batch = on_batch
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._carry: Job | None = None
        self._thread = threading.Thread(target=self._loop, name="rm-scoring", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, items: list[ScoringItem], encoded: list[list[int]], step: int | None = None) -> ScoreFuture:
        job = Job(items, encoded, step)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"the scoring queue is full ({self._queue.maxsize} requests waiting)") from None
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Score what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(self) -> list[Job] | None:
        first = self._carry or self._queue.get()
        self._carry = None
        if first is None:
            return None
        batch, tokens = [first], first.tokens
        deadline = first.arrived + self.max_wait_s
        while len(batch) < self.max_batch_requests and tokens < self.max_batch_tokens:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # seen again after this batch: stop then
                break
            if tokens + job.tokens > self.max_batch_tokens:
                self._carry = job  # first of the next batch
                break
            batch.append(job)
            tokens += job.tokens
        return batch

    def _loop(self) -> None:
        while (batch := self._collect()) is not None:
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                scores = self.scorer.score_encoded_items([i for job in live for i in job.items],
                                                         [e for job in live for e in job.encoded],
                                                         max_tokens_per_batch=self.max_batch_tokens)
            except BaseException as error:  # every waiting request hears about it
                for job in live:
                    job.future.set_exception(error)
                continue
            per_job, start = [], 0
            for job in live:
                per_job.append(scores[start:start + len(job.items)])
                start += len(job.items)
            if self.on_batch:
                self.on_batch(live, per_job)
            for job, values in zip(live, per_job):
                bad = first_non_finite(values)
                if bad is not None:
                    job.future.set_exception(NonFiniteScore(f"the model gave a non-finite score for conversation {bad}"))
                else:
                    job.future.set_result(values)
