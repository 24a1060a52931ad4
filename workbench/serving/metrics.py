"""Counters and a latency histogram for `/metrics`, written as Prometheus text by hand.

Thread-safe: the event loop counts requests, the scoring thread counts batches.
"""

from __future__ import annotations

import threading
from collections import Counter

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCORING_ENDPOINTS = ("/get_reward", "/v1/score")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        suffix = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.total}"]


class ServerMetrics:
    """What `/metrics` reports and the status file summarises."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = Counter()  # (endpoint, status code) -> count
        self.conversations = 0
        self.truncated = 0
        self.batches = 0
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.batch_conversations = Histogram(BATCH_BUCKETS)
        self.latency = {}  # endpoint -> Histogram
        self.queue_depth = lambda: 0
        self.rollouts = lambda: (0, 0)  # (logged, pending)

    def request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            if seconds is not None:
                self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS_S)).observe(seconds)

    def scored(self, conversations: int, truncated: int) -> None:
        with self._lock:
            self.conversations += conversations
            self.truncated += truncated

    def batch(self, requests: int, conversations: int) -> None:
        with self._lock:
            self.batches += 1
            self.batch_requests.observe(requests)
            self.batch_conversations.observe(conversations)

    def served(self) -> int:
        """Scoring requests answered 200 (not /health or /metrics polls)."""
        with self._lock:
            return sum(n for (endpoint, status), n in self.requests.items()
                       if status == 200 and endpoint in SCORING_ENDPOINTS)

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            logged, pending = self.rollouts()
            lines = ["# HELP workbench_rm_requests_total HTTP requests by endpoint and status code "
                     "(499: the client closed the connection before its answer; its work was dropped).",
                     "# TYPE workbench_rm_requests_total counter"]
            lines += [f'workbench_rm_requests_total{{endpoint="{e}",code="{c}"}} {n}'
                      for (e, c), n in sorted(self.requests.items())]
            for name, kind, help_, value in [
                ("conversations_total", "counter", "Conversations scored.", self.conversations),
                ("truncated_total", "counter", "Conversations cut to the model's max length (start dropped).",
                 self.truncated),
                ("batches_total", "counter", "Scoring batches run.", self.batches),
                ("queue_depth", "gauge", "Requests waiting to be scored.", self.queue_depth()),
                ("rollouts_logged_total", "counter", "Rollouts committed to the store.", logged),
                ("rollouts_pending", "gauge", "Scored rollouts not yet committed to the store.", pending),
            ]:
                lines += [f"# HELP workbench_rm_{name} {help_}", f"# TYPE workbench_rm_{name} {kind}",
                          f"workbench_rm_{name} {value}"]
            for name, help_, hist in [("batch_requests", "Requests per scoring batch.", self.batch_requests),
                                      ("batch_conversations", "Conversations per scoring batch.",
                                       self.batch_conversations)]:
                lines += [f"# HELP workbench_rm_{name} {help_}", f"# TYPE workbench_rm_{name} histogram"]
                lines += hist.lines(f"workbench_rm_{name}")
            lines += ["# HELP workbench_rm_request_seconds Request latency, arrival to answer.",
                      "# TYPE workbench_rm_request_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("workbench_rm_request_seconds", f'endpoint="{endpoint}"')
        return "\n".join(lines) + "\n"
