"""A registered tiny reward model and a reward server running on 127.0.0.1 in a thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from workbench.store import Store


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from engine.reward_model import RewardModel
    from tests.tiny import make_tiny_model_dir

    base = make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))
    return RewardModel.from_base(base).save(tmp_path_factory.mktemp("rm") / "tiny-rm")


@pytest.fixture
def store(tmp_path, rm_dir) -> Store:
    from workbench.models.reward_models import register_reward_model

    store = Store(tmp_path / "serve.duckdb", timeout=20)
    register_reward_model(store, rm_dir, name="tiny")
    return store


@contextmanager
def running_server(store: Store, config, *, api_key=None, scorer=None, timeout: float = 60):
    """Start `serve` on a free loopback port in a thread; yields (base url, RewardServer, result dict)."""
    from workbench.serving.server import serve

    config.port = 0
    ready, result, holder = threading.Event(), {}, {}

    def on_ready(server, web):
        holder.update(server=server, web=web)
        ready.set()

    def run():
        try:
            result.update(serve(store, "tiny", config, api_key=api_key, scorer=scorer, on_ready=on_ready))
        except BaseException as error:  # surfaced by the assertion below
            result["error"] = error
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(timeout), "server did not start"
    if "error" in result:
        raise result["error"]
    host, port = holder["server"].address
    try:
        yield f"http://{host}:{port}", holder["server"], result
    finally:
        holder["web"].should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), "server did not stop"


@pytest.fixture
def client():
    with httpx.Client(timeout=30) as c:
        yield c


def wait_until(probe, timeout: float = 30.0):
    """Poll `probe` every 0.1 s until it returns something true (an HTTP error counts as not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
            if value:
                return value
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
