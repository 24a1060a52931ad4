"""Requests to an HTTP API served by one or more replicas: retries, backoff, and taking dead replicas out.

Every caller (sampling, remote reward models, judges) posts JSON through `ReplicaPool.post`, which
owns the failure rules so they are written once:

- 429, 5xx, timeouts and dropped connections are retried, up to `RetryPolicy.max_attempts` in all,
  after an exponential backoff with full jitter (`Retry-After` is honoured when longer), each try on
  the least-loaded replica that is in service;
- a replica whose connection drops or is refused is taken out of service at once, one that fails
  `failures_to_take_out` times in a row (5xx, timeouts) too; it comes back for a try after a cooldown
  that doubles with each consecutive failure (`cooldown_s` .. `max_cooldown_s`), so a restarted server
  rejoins the run. While every replica is out, requests wait for the first to come back;
- 401/403 (wrong API key), other 4xx and a 200 whose body is not JSON are not retried: a replica
  that answers them will answer them again, so the run stops with one line saying which and why.

`ReplicaPool` is an async context manager around one `httpx.AsyncClient` (connection reuse across
replicas); `stats` counts requests, retries and replicas taken out for the run's summary.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field

import httpx

from workbench.errors import WorkbenchError

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class EndpointError(WorkbenchError):
    """An endpoint refused the work for good (wrong key, bad request, an answer that is not the API's)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: the per-request timeout, attempts, backoff and replica cooldown."""

    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    failures_to_take_out: int = 3
    cooldown_s: float = 2.0
    max_cooldown_s: float = 60.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)], at least what the server asked for."""
        delay = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** attempt))
        return max(delay, min(retry_after or 0.0, self.max_backoff_s))


@dataclass
class Replica:
    url: str
    in_flight: int = 0
    failures: int = 0          # consecutive
    out_until: float = 0.0     # monotonic time it comes back; 0 = in service
    times_out: int = 0

    def in_service(self, now: float) -> bool:
        return self.out_until <= now


@dataclass
class PoolStats:
    requests: int = 0
    retries: int = 0
    taken_out: int = 0
    failures: dict = field(default_factory=dict)  # failure kind -> count

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Failure:
    message: str
    kind: str
    take_out: bool = False          # at once (connection refused or dropped)
    retry_after: float | None = None


def base_url(url: str) -> str:
    """A replica's base URL without a trailing slash or `/v1` (paths below add it)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise WorkbenchError(f"endpoint '{url}' is not an http(s) URL: give e.g. http://127.0.0.1:8000")
    return url[:-3] if url.endswith("/v1") else url


class ReplicaPool:
    """Replicas of one server behind one retrying `post`/`get` (use as `async with`)."""

    def __init__(self, urls: list[str], api_key: str | None = None, policy: RetryPolicy | None = None,
                 max_connections: int = 64):
        if not urls:
            raise WorkbenchError("give at least one --endpoint URL")
        self.replicas = [Replica(base_url(u)) for u in dict.fromkeys(urls)]
        self.policy = policy or RetryPolicy()
        self.stats = PoolStats()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client_args = dict(headers=headers, timeout=httpx.Timeout(self.policy.timeout_s, connect=10.0),
                                 limits=httpx.Limits(max_connections=max_connections,
                                                     max_keepalive_connections=max_connections))
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "ReplicaPool":
        self._client = httpx.AsyncClient(**self._client_args)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    async def post(self, path: str, body: dict) -> dict:
        """POST `body` as JSON to `path` on some replica; the parsed JSON answer (see the module doc)."""
        return await self._request("POST", path, body)

    async def get(self, path: str) -> dict:
        return await self._request("GET", path, None)

    async def _request(self, method: str, path: str, body: dict | None) -> dict:
        for attempt in range(self.policy.max_attempts):
            replica = await self._acquire()
            self.stats.requests += 1
            try:
                answer = await self._client.request(method, replica.url + path, json=body)
            except httpx.TimeoutException:
                failure = _Failure(f"no answer within {self.policy.timeout_s:g} s (the per-request timeout)",
                                   "timeout")
            except httpx.TransportError as error:  # refused, reset, dropped mid-answer
                failure = _Failure(f"connection failed ({type(error).__name__}: {error})".replace("()", ""),
                                   "connection", take_out=True)
            else:
                failure = self._judge(replica, path, answer)
                if failure is None:
                    self._succeeded(replica)
                    return answer.json()
            finally:
                replica.in_flight -= 1
            self._failed(replica, failure)
            if attempt + 1 < self.policy.max_attempts:
                self.stats.retries += 1
                await asyncio.sleep(self.policy.backoff(attempt, failure.retry_after))
        raise EndpointError(f"{method} {path} failed {self.policy.max_attempts} times over "
                            f"{', '.join(self.urls)}; last: {replica.url}: {failure.message}")

    def _judge(self, replica: Replica, path: str, answer: httpx.Response) -> _Failure | None:
        """None for a usable answer, a retryable failure, or raise for a final one."""
        where = f"{replica.url}{path}"
        if answer.status_code in (401, 403):
            raise EndpointError(f"{where} refused the API key (HTTP {answer.status_code}): put the right key in "
                                "the variable named by --api-key-env")
        if answer.status_code in RETRYABLE_STATUS:
            return _Failure(f"HTTP {answer.status_code}: {_excerpt(answer.text)}", f"http_{answer.status_code}",
                            retry_after=_retry_after(answer))
        if answer.status_code >= 400:
            raise EndpointError(f"{where} answered HTTP {answer.status_code}: {_excerpt(answer.text)}")
        try:
            answer.json()
        except ValueError:
            raise EndpointError(f"{where} answered something that is not JSON ({_excerpt(answer.text)!r}): "
                                "is the URL the server's base URL, e.g. http://host:8000?") from None
        return None

    async def _acquire(self) -> Replica:
        """The least-loaded replica in service; while none is, wait for the first to come back."""
        while True:
            now = time.monotonic()
            serving = [r for r in self.replicas if r.in_service(now)]
            if serving:
                replica = min(serving, key=lambda r: (r.in_flight, random.random()))
                replica.in_flight += 1
                return replica
            await asyncio.sleep(max(0.01, min(r.out_until for r in self.replicas) - now))

    def _succeeded(self, replica: Replica) -> None:
        replica.failures, replica.times_out = 0, 0

    def _failed(self, replica: Replica, failure: _Failure) -> None:
        self.stats.failures[failure.kind] = self.stats.failures.get(failure.kind, 0) + 1
        if failure.kind.startswith("http_429"):
            return  # busy, not broken: backoff is enough
        replica.failures += 1
        if failure.take_out or replica.failures >= self.policy.failures_to_take_out:
            if replica.in_service(time.monotonic()):
                cooldown = min(self.policy.max_cooldown_s, self.policy.cooldown_s * 2 ** replica.times_out)
                replica.out_until = time.monotonic() + cooldown
                replica.times_out += 1
                self.stats.taken_out += 1


def _retry_after(answer: httpx.Response) -> float | None:
    try:
        return float(answer.headers.get("retry-after", ""))
    except ValueError:
        return None


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
