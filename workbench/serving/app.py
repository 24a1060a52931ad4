"""The reward server's HTTP API (FastAPI): OpenRLHF's `/get_reward`, `/v1/score`, `/health`, `/metrics`.

    POST /get_reward  {"query": [full text, ...], "prompts": [...]?, "labels": [...]?, "step": int?}
                   -> {"rewards": [...], "scores": [...], "extra_logs": {"truncated": [0|1, ...]}}
    POST /v1/score    {"conversations": [[{"role": ..., "content": ...}, ..., assistant reply], ...], "step": int?}
                   -> {"scores": [...], "truncated": [bool, ...], "model": "NAME@VERSION"}

`extra_logs` values are lists of numbers, one per query, because OpenRLHF turns each into a
tensor and logs it. `RequestGuard` checks every request first (key, Host, Origin, Content-Type:
`guards.py`) and counts every answer; a handler then reads the body (Content-Length and the bytes
actually received), parses the JSON, checks the caps per query and per request, encodes on a
worker thread, then waits for the dynamic batcher, dropping its work when the client goes away.
Errors are JSON `{"error": one line}`: 400 Host, 401 key, 403 Origin, 413 size, 415 type, 422
input, 503 queue full, 500 model. A client that leaves before its answer is counted as 499.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from engine.conversation import ROLES
from engine.data import ScoringItem
from engine.errors import EngineError
from workbench.serving.batching import NonFiniteScore, QueueFull
from workbench.serving.guards import ApiError, request_refusal
from workbench.serving.transcripts import TranscriptError, split_transcript

log = logging.getLogger(__name__)
CLIENT_GONE = 499  # nginx's "client closed request": counted, never sent
MESSAGE_OVERHEAD_BYTES = 16  # a conversation's size counts each message's turn markers as this much


class ClientGone(Exception):
    """The client closed the connection before its answer; nothing is sent."""


async def read_json(request: Request, limit: int):
    """The request's JSON body, refusing bodies over `limit` bytes before and while reading."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, f"request body is larger than {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"request body is larger than {limit} bytes")
    except ClientDisconnect:
        raise ClientGone("while sending the body") from None
    try:  # orjson refuses lone surrogates, nesting over 1024 levels and numbers no float holds
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(422, f"body is not valid JSON: {error}") from None


class Caps:
    """The per-request limits of `ServeConfig`: queries per request, bytes per query."""

    def __init__(self, max_queries: int, max_query_bytes: int):
        self.max_queries, self.max_query_bytes = max_queries, max_query_bytes

    def count(self, n: int, what: str) -> None:
        if n > self.max_queries:
            raise ApiError(413, f"{n:,} {what} in one request; the limit is {self.max_queries:,} "
                                "(--max-queries-per-request): send them in several requests")

    def size(self, size: int, what: str) -> None:
        if size > self.max_query_bytes:
            raise ApiError(413, f"{what} is {size:,} bytes; the limit is {self.max_query_bytes:,} "
                                "(--max-query-bytes)")


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


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


def parse_get_reward(body, markers, eos: str | None, caps: Caps) -> tuple[list[ScoringItem], int | None]:
    """OpenRLHF's request -> scoring items (see `workbench.serving.transcripts` for the split)."""
    if not isinstance(body, dict) or "query" not in body:
        raise ApiError(422, "body must be an object with 'query': a list of full texts")
    queries = _list_of(body["query"], str, "query")
    caps.count(len(queries), "queries")
    prompts = body.get("prompts")
    if prompts is not None:
        prompts = _list_of(prompts, str, "prompts", len(queries))
    for i, query in enumerate(queries):  # every size before any work
        caps.size(utf8_size(query), f"query {i}")
        if prompts:
            caps.size(utf8_size(prompts[i]), f"prompt {i}")
    items = []
    for i, query in enumerate(queries):
        try:
            messages, reply = split_transcript(markers, query, prompts[i] if prompts else None, eos)
        except TranscriptError as error:
            raise ApiError(422, f"query {i}: {error}") from None
        items.append(ScoringItem(messages, reply))
    return items, _step(body)


def _message_size(i: int, j: int, message) -> int:
    """A message's bytes (role, content, turn markers); refuses one that is not a role/content object."""
    where = f"conversation {i} message {j}"
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        raise ApiError(422, f"{where} must be an object with 'role' and a string 'content'")
    role = message.get("role")
    if role not in ROLES:
        shown = repr(role) if isinstance(role, str) and len(role) <= 40 else "that is not a role"
        raise ApiError(422, f"{where} has role {shown}; use one of {', '.join(ROLES)}")
    return len(role) + utf8_size(message["content"]) + MESSAGE_OVERHEAD_BYTES


def parse_conversations(body, caps: Caps) -> tuple[list[ScoringItem], int | None]:
    """`/v1/score`'s request -> scoring items: each conversation ends with the assistant reply."""
    if not isinstance(body, dict) or not isinstance(body.get("conversations"), list):
        raise ApiError(422, "body must be an object with 'conversations': a list of message lists")
    caps.count(len(body["conversations"]), "conversations")
    items = []
    for i, conversation in enumerate(body["conversations"]):
        if not isinstance(conversation, list) or not conversation:
            raise ApiError(422, f"conversation {i} must be a non-empty list of messages")
        last = conversation[-1]
        if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
            raise ApiError(422, f"conversation {i} must end with an assistant message (the reply to score)")
        caps.size(sum(_message_size(i, j, m) for j, m in enumerate(conversation)), f"conversation {i}")
        items.append(ScoringItem(conversation[:-1], last["content"]))
    return items, _step(body)


class RequestGuard:
    """ASGI middleware: refuses what `guards.request_refusal` refuses, counts every answer by status
    (a client gone before its answer as 499), and turns an unexpected error into one JSON 500."""

    def __init__(self, app, server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, endpoint, sent = time.perf_counter(), scope["path"], {}

        async def counted(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            await send(message)

        try:
            refusal = request_refusal(scope, self.server.config.host, self.server.api_key)
            if refusal is not None:
                await error_response(refusal.status, refusal.message)(scope, receive, counted)
            else:
                await self.app(scope, receive, counted)
        except ClientGone:
            sent.setdefault("status", CLIENT_GONE)
        except Exception as error:  # a bug: one traceback in the log, one line to the client
            log.exception("reward server: %s %s failed", scope.get("method"), endpoint)
            if "status" not in sent:
                await error_response(500, f"internal error ({type(error).__name__}); see the server log")(
                    scope, receive, counted)
        known = endpoint in ("/get_reward", "/v1/score", "/health", "/metrics")
        self.server.metrics.request(endpoint if known else "other", sent.get("status", 500),
                                    time.perf_counter() - started if endpoint in ("/get_reward", "/v1/score") else None)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Retry-After": "1"} if status == 503 else None)


async def _until_disconnect(request: Request) -> None:
    # once the body is read, the server's next message is the disconnect (or the end of the answer)
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _retrieve(future) -> None:
    if not future.cancelled():
        future.exception()


def build_app(server) -> FastAPI:
    """The FastAPI app over a `RewardServer` (scorer, batcher, metrics, optional rollout log)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(server.close)  # after the last answer: drain, commit, close the runs

    app = FastAPI(title="workbench reward server", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(RequestGuard, server=server)
    limit = server.config.max_request_bytes
    caps = Caps(server.config.max_queries_per_request, server.config.max_query_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error_response(error.status, error.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):  # 404, 405: the same JSON shape
        return error_response(error.status_code, str(error.detail))

    async def score(request: Request, items: list[ScoringItem], step: int | None) -> tuple[list[float], list[bool]]:
        if not items:
            return [], []
        gone = asyncio.ensure_future(_until_disconnect(request))
        try:
            try:
                encoded, truncated = await run_in_threadpool(server.encode, items)
            except EngineError as error:
                raise ApiError(422, str(error).splitlines()[0][:500]) from None
            if gone.done():
                raise ClientGone("before scoring")
            try:
                future = server.batcher.submit(items, encoded, step)
            except QueueFull as error:
                raise ApiError(503, str(error)) from None
            scored = asyncio.wrap_future(future)
            await asyncio.wait({scored, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not scored.done():
                future.drop()  # not scored if still queued, never logged
                scored.add_done_callback(_retrieve)  # its outcome is nobody's now: no "never retrieved" log
                raise ClientGone("while waiting for the scores")
            try:
                scores = scored.result()
            except NonFiniteScore as error:
                raise ApiError(500, str(error)) from None
        finally:
            gone.cancel()
            gone.add_done_callback(_retrieve)
        server.metrics.scored(len(items), sum(truncated))
        return scores, truncated

    @app.post("/get_reward")
    async def get_reward(request: Request):
        items, step = parse_get_reward(await read_json(request, limit), server.markers, server.eos, caps)
        scores, truncated = await score(request, items, step)
        return {"rewards": scores, "scores": scores, "extra_logs": {"truncated": [int(t) for t in truncated]}}

    @app.post("/v1/score")
    async def score_conversations(request: Request):
        items, step = parse_conversations(await read_json(request, limit), caps)
        scores, truncated = await score(request, items, step)
        return {"scores": scores, "truncated": truncated, "model": server.model_name}

    @app.get("/health")
    async def health():
        return server.status()

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
