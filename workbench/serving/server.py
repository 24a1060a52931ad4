"""`workbench serve`: load a registered reward model once and serve it over HTTP (see `app.py`).

`RewardServer` holds everything a request needs (the scorer, the chat-template markers, the
dynamic batcher, the metrics and, with `log_to_store`, the rollout log). `serve` runs it under
uvicorn on the calling thread until SIGINT/SIGTERM, then answers the requests in flight, scores
what is queued, commits the rollouts, closes its runs and removes its status file (the app's
lifespan shutdown calls `RewardServer.close`), and returns normally: a stop signal is a request
to stop, so the process exits 0 with its summary instead of dying of the re-raised signal. While it runs, a small JSON status file beside the store
(`<store>.rm-server-<pid>.json`: pid, address, counters) tells the app's Overview about it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from workbench.errors import WorkbenchError
from workbench.models.reward_models import resolve_reward_model
from workbench.serving.batching import DynamicBatcher
from workbench.serving.config import ServeConfig
from workbench.serving.metrics import ServerMetrics
from workbench.serving.rollout_log import Rollout, RolloutLog
from workbench.serving.transcripts import TemplateMarkers
from workbench.store import Store

STATUS_EVERY_S = 1.0
ENCODE_GROUP_CHARS = 1 << 20
log = logging.getLogger(__name__)


def api_key_from_env(var: str | None) -> str | None:
    """The key held in environment variable `var` (None when no variable is named)."""
    if var is None:
        return None
    key = os.environ.get(var, "")
    if not key.strip():
        raise WorkbenchError(f"--api-key-env {var}: the environment variable is unset or empty")
    return key.strip()


class RewardServer:
    """A loaded reward model plus the machinery around it; `close()` drains and commits."""

    def __init__(self, store: Store, rm: str, config: ServeConfig, *, api_key: str | None = None, scorer=None):
        config.validate(api_key)
        self.store, self.config, self.api_key = store, config, api_key
        self.model = resolve_reward_model(store, rm, config.trust_remote_code)
        self.model.require_weights()
        self.model_name = self.model.label
        self.scorer = scorer or self.model.load_scorer(max_length=config.max_length, precision=config.precision,
                                                       trust_remote_code=config.trust_remote_code)
        self.encoder = self.scorer.encoder
        self._encoding = threading.Lock()  # one Rust tokenizer shared by the request threads
        tokenizer = self.encoder.tokenizer
        self.markers = TemplateMarkers.from_tokenizer(tokenizer)
        self.eos = tokenizer.eos_token
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.address = (config.host, config.port)
        self.metrics = ServerMetrics()
        self.rollouts = RolloutLog(store, self.model, {"started": self.started, "pid": os.getpid()}) \
            if config.log_to_store else None
        self.batcher = DynamicBatcher(self.scorer, max_batch_tokens=config.max_batch_tokens,
                                      max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue,
                                      max_batch_requests=config.max_batch_requests, on_batch=self._scored_batch)
        self.metrics.queue_depth = self.batcher.depth
        self.metrics.rollouts = lambda: (self.rollouts.logged, self.rollouts.pending()) if self.rollouts else (0, 0)
        self.status_path = Path(f"{store.path}.rm-server-{os.getpid()}.json")
        self._closing = threading.Lock()  # the status writer and close() never interleave
        self.closed = False

    def _scored_batch(self, jobs, scores) -> None:
        self.metrics.batch(len(jobs), sum(len(job.items) for job in jobs))
        if self.rollouts is None:
            return
        self.rollouts.add([Rollout(list(item.prompt), item.response, value, job.step)
                           for job, values in zip(jobs, scores) if not job.dropped
                           for item, value in zip(job.items, values) if math.isfinite(value)])

    def encode(self, items) -> tuple[list[list[int]], list[bool]]:
        """Token ids and truncation flags of scoring items (called from request threads).

        Tokenized a group of about `ENCODE_GROUP_CHARS` characters at a time: the tokenizer's
        working memory grows with the text it is given, the ids kept are cut to `max_length`."""
        ids, truncated = [], []
        with self._encoding:
            for group in _groups(items, ENCODE_GROUP_CHARS):
                group_ids, group_truncated = self.encoder.encode_many_reporting(group)
                ids += group_ids
                truncated += group_truncated
        return ids, truncated

    def status(self) -> dict:
        """What `/health` answers and the status file holds."""
        return {"status": "ok", "pid": os.getpid(), "model": self.model_name, "rm_id": self.model.rm_id,
                "host": self.address[0], "port": self.address[1], "started": self.started,
                "store": str(self.store.path), "queue_depth": self.batcher.depth(),
                "requests_served": self.metrics.served(),
                "log_to_store": self.rollouts is not None,
                "rollouts_logged": self.rollouts.logged if self.rollouts else 0,
                "rollouts_pending": self.rollouts.pending() if self.rollouts else 0}

    def write_status(self) -> None:
        """Rewrite the status file atomically; a store folder we cannot write to only loses the Overview line."""
        tmp = self.status_path.with_suffix(".tmp")
        try:
            with self._closing:
                if self.closed:
                    return
                tmp.write_text(json.dumps(self.status()))
                os.replace(tmp, self.status_path)
        except OSError as error:
            if not getattr(self, "_status_warned", False):
                log.warning("cannot write the status file %s: %s", self.status_path, error)
                self._status_warned = True

    def close(self) -> None:
        """Score what is queued, commit the rollouts, close their runs, remove the status file (once)."""
        with self._closing:
            if self.closed:
                return
            self.closed = True
            self.batcher.close()
            if self.rollouts is not None:
                self.rollouts.close()
            self.status_path.unlink(missing_ok=True)


def _groups(items, chars: int):
    group, size = [], 0
    for item in items:
        length = len(item.response) + sum(len(m["content"]) for m in item.prompt)
        if group and size + length > chars:
            yield group
            group, size = [], 0
        group.append(item)
        size += length
    if group:
        yield group


class StoppableWeb(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM are not raised again once it has shut down.

    uvicorn catches the signal, shuts down gracefully, then re-raises it so that the process dies
    of it (exit 143 for SIGTERM, KeyboardInterrupt -> "Aborted!" for SIGINT): code after `run()`
    would never run. Here the signal only asks the server to stop; `stopped_by` names it.
    """

    stopped_by: str | None = None

    @contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread (tests run servers in threads)
            return
        original = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def _stop(self, sig, frame) -> None:
        self.stopped_by = self.stopped_by or signal.Signals(sig).name
        self.handle_exit(sig, frame)  # a second Ctrl+C still skips waiting for slow clients


def serve(store: Store, rm: str, config: ServeConfig, *, api_key: str | None = None, scorer=None,
          on_ready=None) -> dict:
    """Serve until SIGINT/SIGTERM (or `server.should_exit`); returns the final status."""
    from workbench.serving.app import build_app

    server = RewardServer(store, rm, config, api_key=api_key, scorer=scorer)
    web = StoppableWeb(uvicorn.Config(build_app(server), host=config.host, port=config.port,
                                      log_level="warning", access_log=False, lifespan="on"))
    stop = threading.Event()

    def keep_status() -> None:
        while not web.started and not stop.wait(0.05):
            pass
        if not web.started:
            return
        if web.servers:
            server.address = web.servers[0].sockets[0].getsockname()[:2]
        if on_ready:
            on_ready(server, web)
        while True:
            if not stop.is_set():
                server.write_status()
            if stop.wait(STATUS_EVERY_S):
                return

    watcher = threading.Thread(target=keep_status, name="rm-status", daemon=True)
    watcher.start()
    try:
        web.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        if not web.started:
            raise WorkbenchError(f"cannot listen on {config.host}:{config.port} (address in use?)") from None
        raise
    finally:
        stop.set()
        watcher.join(5)
        final = server.status()
        server.close()  # done already by the app's shutdown, unless a second signal forced the exit
        final.update(rollouts_logged=server.rollouts.logged if server.rollouts else 0, rollouts_pending=0,
                     queue_depth=0, requests_served=server.metrics.served(), stopped_by=web.stopped_by)
    return final
