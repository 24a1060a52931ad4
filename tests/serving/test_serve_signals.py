"""`workbench serve` stopped by a real SIGTERM or SIGINT: the queue is scored, the rollouts are
committed, the run is closed, the status file is removed, the summary is printed, exit code 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import free_port
from tests.serving.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]


def _conversations(tag: str, n: int):
    return [[{"role": "user", "content": f"{tag} prompt"}, {"role": "assistant", "content": f"{tag} reply {i}"}]
            for i in range(n)]



def _client_connected(pid: int, port: int) -> bool:
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
               for c in psutil.Process(pid).net_connections(kind="tcp"))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_the_queue_commits_closes_the_run_and_exits_0(store, tmp_path, stop):
    port = free_port()
    # a long batching wait keeps the second request queued while the signal arrives
    args = [sys.executable, "-m", "workbench", "--db", str(store.path), "serve", "--rm", "tiny",
            "--port", str(port), "--log-to-store", "--max-wait-ms", "2500"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok", timeout=300)  # cold start
        first = httpx.post(f"{url}/v1/score", json={"conversations": _conversations("first", 3), "step": 1}, timeout=30)
        assert first.status_code == 200
        answers = {}
        queued = threading.Thread(target=lambda: answers.update(second=httpx.post(
            f"{url}/v1/score", json={"conversations": _conversations("second", 2), "step": 2}, timeout=60)))
        queued.start()
        wait_until(lambda: _client_connected(child.pid, port), timeout=20)
        time.sleep(0.5)  # the request is read and waits in the batcher (2.5 s)
        assert list(tmp_path.glob("*.rm-server-*.json"))
        child.send_signal(stop)
        out, err = child.communicate(timeout=180)  # exiting can be slow on a busy machine
        queued.join(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert "Aborted" not in err and "Traceback" not in err, err
    assert answers["second"].status_code == 200  # answered before the server went away
    summary = json.loads(out)
    assert summary == {"model": "tiny@1", "requests_served": 2, "rollouts_logged": 5}
    assert f"stopped by {stop.name}" in err
    assert not list(tmp_path.glob("*.rm-server-*.json"))  # status file removed
    with store.connect() as con:
        texts = sorted(t for (t,) in con.execute("SELECT text FROM responses").fetchall())
        runs = con.execute("SELECT status, summary FROM runs WHERE kind = 'rollout' ORDER BY summary").fetchall()
        scored = con.execute("SELECT count(*) FROM scores").fetchall()[0][0]
    assert texts == [f"first reply {i}" for i in range(3)] + [f"second reply {i}" for i in range(2)]
    assert scored == 5
    assert sorted((status, json.loads(s)["rollouts"]) for status, s in runs) == [("completed", 2), ("completed", 3)]
