"""Real servers on loopback ports for the endpoint tests.

`transformers_serve(model_dir)` starts `transformers serve` (the OpenAI-compatible server that ships
with transformers) in a child process and waits until it lists its model. `StandIn` is a small
FastAPI server that misbehaves on purpose, one behaviour per URL prefix (`http://host:port/garbage`
is a server whose every answer is HTML, `/fail500` one that always answers 500, ...): the failures a
client must survive or report, produced over real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from tests.processes import free_port

RIGHT_KEY = "right-key"


def transformers_serve(model_dir: Path, log: Path, continuous_batching: bool = False) -> tuple[subprocess.Popen, str]:
    """Start `transformers serve MODEL_DIR` on a free loopback port: (process, base URL); see `wait_until_ready`."""
    port = free_port()
    args = [str(Path(sys.executable).with_name("transformers")), "serve", str(model_dir), "--host", "127.0.0.1",
            "--port", str(port), "--device", "cpu", "--log-level", "warning"]
    if continuous_batching:
        args.append("--continuous-batching")
    process = subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def wait_until_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"transformers serve did not answer within {timeout} s: {log.read_text()[-2000:]}")


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _choices(n: int, text: str) -> list[dict]:
    return [{"index": i, "message": {"role": "assistant", "content": f"{text} {i}"}, "text": f"{text} {i}",
             "finish_reason": "stop"} for i in range(n)]


def build_stand_in(hits: dict):
    """The misbehaving server's app; `hits[mode]` counts the sampling requests each behaviour got."""
    app = FastAPI()

    def answer(mode: str, n: int, key: str):
        hits[mode] = hits.get(mode, 0) + 1
        count = hits[mode, key] = hits.get((mode, key), 0) + 1  # per conversation: concurrency does not matter
        if mode == "garbage":
            return PlainTextResponse("<html><body>It works!</body></html>")
        if mode == "fail500" or (mode == "flaky" and count < 3):  # flaky: 500, 429, then an answer
            status = 429 if mode == "flaky" and count == 2 else 500
            return JSONResponse({"error": "boom"}, status_code=status, headers={"Retry-After": "0"})
        if mode == "nochoices":
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": []})
        return JSONResponse({"id": "x", "object": "chat.completion", "model": f"stand-in-{mode}",
                             "choices": _choices(n, mode),
                             "usage": {"prompt_tokens": 5, "completion_tokens": 2 * n, "total_tokens": 5 + 2 * n}})

    @app.middleware("http")
    async def key_check(request: Request, call_next):
        if request.url.path.startswith("/auth/") and \
                request.headers.get("authorization") != f"Bearer {RIGHT_KEY}":
            return JSONResponse({"error": "invalid api key"}, status_code=401)
        return await call_next(request)

    @app.get("/{mode}/v1/models")
    async def models(mode: str):
        if mode == "garbage":
            return PlainTextResponse("<html><body>It works!</body></html>")
        return {"object": "list", "data": [{"id": f"stand-in-{mode}", "object": "model"}]}

    @app.post("/{mode}/v1/chat/completions")
    async def chat(mode: str, request: Request):
        body = await request.json()
        if mode == "slow":
            await asyncio.sleep(5)
        return answer(mode, int(body.get("n", 1)), str(body.get("messages")))

    @app.post("/vllm/pooling")
    async def pooling(request: Request):
        """vLLM's pooling answer for a one-label reward model (docs.vllm.ai, "Pooling API")."""
        body = await request.json()
        hits["vllm"] = hits.get("vllm", 0) + 1
        reply = body["messages"][-1]["content"]
        return {"id": "pool-1", "object": "list", "model": body.get("model"),
                "data": [{"index": 0, "object": "pooling", "data": [float(len(reply))]}],
                "usage": {"prompt_tokens": 7, "total_tokens": 7}}

    return app


@contextmanager
def stand_in(port: int | None = None):
    """The misbehaving server on a loopback port: yields (base URL without a mode, hits)."""
    import uvicorn

    hits: dict = {}
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(build_stand_in(hits), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "stand-in server did not start"
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        server.should_exit = True
        thread.join(10)
