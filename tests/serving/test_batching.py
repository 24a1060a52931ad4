"""The dynamic batcher alone, with a recording scorer: budgets, carry-over, order, errors."""

from __future__ import annotations

import threading

import pytest

from engine.data import ScoringItem
from workbench.serving.batching import DynamicBatcher, QueueFull


class RecordingScorer:
    """Scores a conversation by its token count; records each call; can hold the first call."""

    def __init__(self, hold: bool = False, fail: bool = False):
        self.calls, self.fail = [], fail
        self.entered, self.gate = threading.Event(), threading.Event()
        if not hold:
            self.gate.set()

    def score_encoded_items(self, items, encoded, max_tokens_per_batch):
        self.entered.set()
        assert self.gate.wait(10)
        self.calls.append([len(e) for e in encoded])
        if self.fail:
            raise RuntimeError("model exploded")
        return [float(sum(e)) for e in encoded]


def job(tokens: int, n: int = 1):
    return [ScoringItem([], "x")] * n, [[tokens] * tokens for _ in range(n)]


def test_requests_waiting_together_share_a_batch_within_the_token_budget():
    scorer = RecordingScorer(hold=True)
    batcher = DynamicBatcher(scorer, max_batch_tokens=100, max_wait_s=0.0, max_queue=10, max_batch_requests=3)
    first = batcher.submit(*job(10))
    assert scorer.entered.wait(10)  # the first batch is [first] alone; the rest queue up behind it
    futures = [batcher.submit(*job(t, n)) for t, n in [(30, 2), (30, 1), (50, 1), (5, 1), (5, 1), (5, 1), (5, 1)]]
    scorer.gate.set()
    results = [f.result(10) for f in [first, *futures]]
    batcher.close()
    # per request, its own scores in its own order
    assert results == [[100.0], [900.0, 900.0], [900.0], [2500.0], [25.0], [25.0], [25.0], [25.0]]
    # 60 + 30 tokens fit 100; the 50-token request starts the next batch; at most 3 requests a batch
    assert scorer.calls == [[10], [30, 30, 30], [50, 5, 5], [5, 5]]


def test_a_full_queue_refuses_and_an_error_reaches_every_request_of_the_batch():
    scorer = RecordingScorer(hold=True, fail=True)
    batcher = DynamicBatcher(scorer, max_batch_tokens=100, max_wait_s=0.0, max_queue=2)
    held = batcher.submit(*job(1))
    assert scorer.entered.wait(10)
    queued = [batcher.submit(*job(1)), batcher.submit(*job(1))]
    with pytest.raises(QueueFull, match="2 requests waiting"):
        batcher.submit(*job(1))
    scorer.gate.set()
    for future in [held, *queued]:
        with pytest.raises(RuntimeError, match="model exploded"):
            future.result(10)
    batcher.close()
