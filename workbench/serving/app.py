"""The reward server's HTTP API (FastAPI): OpenRLHF's `/get_reward`, `/v1/score`, `/health`, `/metrics`.

    POST /get_reward  {"query": [full text, ...], "prompts": [...]?, "labels": [...]?, "step": int?}
                   -> {"rewards": [...], "scores": [...], "extra_logs": {"truncated": [0|1, ...]}}
    POST /v1/score    {"conversations": [[{"role": ..., "content": ...}, ..., assistant reply], ...], "step": int?}
                   -> {"scores": [...], "truncated": [bool, ...], "model": "NAME@VERSION"}

`extra_logs` values are lists of numbers, one per query, because OpenRLHF turns each into a
tensor and logs it. Every handler checks the key, the body size (Content-Length and the bytes
actually received) and the JSON, encodes on a worker thread, then waits for the dynamic batcher.
Errors are JSON `{"error": one line}`: 401 key, 413 size, 422 input, 503 queue full, 500 model.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from engine.data import ScoringItem
from engine.errors import EngineError
from workbench.serving.batching import NonFiniteScore, QueueFull
from workbench.serving.transcripts import TranscriptError, split_transcript


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def read_json(request: Request, limit: int):
    """The request's JSON body, refusing bodies over `limit` bytes before and while reading."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(422, f"body is not valid JSON: {error}") from None


def _list_of(value, kind, name: str, length: int | None = None) -> list:
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise ApiError(422, f"'{name}' must be a list of {kind.__name__ if isinstance(kind, type) else 'values'}")
    if length is not None and len(value) != length:
        raise ApiError(422, f"'{name}' has {len(value)} entries, 'query' has {length}")
    return value


def _step(body: dict) -> int | None:
    step = body.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise ApiError(422, "'step' must be an integer")
    return step


def parse_get_reward(body, markers, eos: str | None) -> tuple[list[ScoringItem], int | None]:
    """OpenRLHF's request -> scoring items (see `workbench.serving.transcripts` for the split)."""
    if not isinstance(body, dict) or "query" not in body:
        raise ApiError(422, "body must be an object with 'query': a list of full texts")
    queries = _list_of(body["query"], str, "query")
    prompts = body.get("prompts")
    if prompts is not None:
        prompts = _list_of(prompts, str, "prompts", len(queries))
    items = []
    for i, query in enumerate(queries):
        try:
            messages, reply = split_transcript(markers, query, prompts[i] if prompts else None, eos)
        except TranscriptError as error:
            raise ApiError(422, f"query {i}: {error}") from None
        items.append(ScoringItem(messages, reply))
    return items, _step(body)


def parse_conversations(body) -> tuple[list[ScoringItem], int | None]:
    """`/v1/score`'s request -> scoring items: each conversation ends with the assistant reply."""
    if not isinstance(body, dict) or not isinstance(body.get("conversations"), list):
        raise ApiError(422, "body must be an object with 'conversations': a list of message lists")
    items = []
    for i, conversation in enumerate(body["conversations"]):
        if not isinstance(conversation, list) or not conversation:
            raise ApiError(422, f"conversation {i} must be a non-empty list of messages")
        last = conversation[-1]
        if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
            raise ApiError(422, f"conversation {i} must end with an assistant message (the reply to score)")
        items.append(ScoringItem(conversation[:-1], last["content"]))
    return items, _step(body)


def build_app(server) -> FastAPI:
    """The FastAPI app over a `RewardServer` (scorer, batcher, metrics, optional rollout log)."""
    app = FastAPI(title="workbench reward server", docs_url=None, redoc_url=None, openapi_url=None)
    limit = server.config.max_request_bytes

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        endpoint = request.url.path
        try:
            if server.api_key is not None:
                header = request.headers.get("authorization", "")
                if not hmac.compare_digest(header.encode(), f"Bearer {server.api_key}".encode()):
                    raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'")
            response = await call_next(request)
        except ApiError as error:
            response = JSONResponse({"error": error.message}, status_code=error.status,
                                    headers={"Retry-After": "1"} if error.status == 503 else None)
        known = endpoint in ("/get_reward", "/v1/score", "/health", "/metrics")
        server.metrics.request(endpoint if known else "other", response.status_code,
                               time.perf_counter() - started if endpoint in ("/get_reward", "/v1/score") else None)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse({"error": error.message}, status_code=error.status,
                            headers={"Retry-After": "1"} if error.status == 503 else None)

    async def score(items: list[ScoringItem], step: int | None) -> tuple[list[float], list[bool]]:
        if not items:
            return [], []
        try:
            encoded, truncated = await run_in_threadpool(server.encode, items)
        except EngineError as error:
            raise ApiError(422, str(error)) from None
        try:
            future = server.batcher.submit(items, encoded, step)
        except QueueFull as error:
            raise ApiError(503, str(error)) from None

        try:
            scores = await asyncio.wrap_future(future)
        except NonFiniteScore as error:
            raise ApiError(500, str(error)) from None
        server.metrics.scored(len(items), sum(truncated))
        return scores, truncated

    @app.post("/get_reward")
    async def get_reward(request: Request):
        items, step = parse_get_reward(await read_json(request, limit), server.markers, server.eos)
        scores, truncated = await score(items, step)
        return {"rewards": scores, "scores": scores, "extra_logs": {"truncated": [int(t) for t in truncated]}}

    @app.post("/v1/score")
    async def score_conversations(request: Request):
        items, step = parse_conversations(await read_json(request, limit))
        scores, truncated = await score(items, step)
        return {"scores": scores, "truncated": truncated, "model": server.model_name}

    @app.get("/health")
    async def health():
        return server.status()

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
