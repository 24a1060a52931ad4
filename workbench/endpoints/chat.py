"""An OpenAI-compatible policy or judge behind one or more replicas: messages in, replies out.

    async with ReplicaPool(["http://127.0.0.1:8000"]) as pool:
        replies = await ChatClient(pool, "my-model").complete(messages, n=4, params=params)

    reply = chat_reply(["http://127.0.0.1:8000"], "my-model", messages)   # one call, synchronous
    reply.text, reply.finish_reason, reply.usage

`complete` asks for `n` choices and, when the server gives fewer (`transformers serve` and
llama.cpp ignore `n`), asks again for the rest, each time with the seed of the first sample still
missing, until it holds exactly `n`. `/v1/completions` (`api="completions"`) takes text prompts:
the caller renders the conversation (`render_prompt`). Retries and replicas are `ReplicaPool`'s.
Judges (one reply per prompt, text + finish reason + usage) use `chat_reply` / `chat_replies`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from engine.data import Message, SamplingParams
from workbench.endpoints.replicas import EndpointError, ReplicaPool, RetryPolicy

APIS = ("chat", "completions")
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
# Finish reasons servers use for "the model ended its reply" (vLLM/OpenAI: stop; TGI: eos_token, stop_sequence).
STOPPED = {"stop", "eos", "eos_token", "stop_sequence", "end_turn"}


@dataclass
class Reply:
    """One choice of a completion."""

    text: str
    finish_reason: str             # "length" (hit max tokens), "stop", or what the server said
    usage: dict                    # the response's usage (shared by its choices when there were several)
    model: str | None              # the model id the server answered with
    seconds: float = 0.0           # latency of the request that produced it
    choices_in_request: int = 1
    seed: int | None = None        # the seed sent with the request


@dataclass
class Usage:
    """Token counts summed over every request of a run (from each response's `usage`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    short_answers: int = 0         # requests that came back with fewer choices than asked
    models: set = field(default_factory=set)

    def add(self, answer: dict, asked: int, got: int) -> None:
        usage = answer.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        self.requests += 1
        self.short_answers += got < asked
        if answer.get("model"):
            self.models.add(str(answer["model"]))

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "requests": self.requests, "short_answers": self.short_answers, "models": sorted(self.models)}


def normal_finish_reason(reason) -> str:
    if reason == "length":
        return "length"
    return "stop" if reason in STOPPED else str(reason or "unknown")


class ChatClient:
    """Sampling requests for one model name over a `ReplicaPool`."""

    def __init__(self, pool: ReplicaPool, model: str, api: str = "chat", send_seed: bool = True):
        if api not in APIS:
            raise EndpointError(f"unknown endpoint API '{api}': use one of {', '.join(APIS)}")
        self.pool, self.model, self.api, self.send_seed = pool, model, api, send_seed
        self.usage = Usage()

    async def complete(self, prompt: list[Message] | str, n: int, params: SamplingParams,
                       seeds: list[int] | None = None) -> list[Reply]:
        """Exactly `n` replies to `prompt`; `seeds[i]` is sent when reply i is the first still missing."""
        replies: list[Reply] = []
        while len(replies) < n:
            seed = seeds[len(replies)] if seeds else None
            replies += await self.request(prompt, n - len(replies), params, seed)
        return replies

    async def request(self, prompt: list[Message] | str, n: int, params: SamplingParams,
                      seed: int | None = None) -> list[Reply]:
        """One request for up to `n` choices (a server may give fewer; never more are returned)."""
        body = {"model": self.model, "n": n, "temperature": params.temperature, "top_p": params.top_p,
                "max_tokens": params.max_new_tokens}
        body |= {"messages": prompt} if self.api == "chat" else {"prompt": prompt}
        if seed is not None and self.send_seed:
            body["seed"] = seed
        started = time.perf_counter()
        answer = await self.pool.post(PATHS[self.api], body)
        seconds = time.perf_counter() - started
        choices = _choices(answer, self.api, PATHS[self.api])[:n]
        self.usage.add(answer, n, len(choices))
        return [Reply(text, normal_finish_reason(reason), answer.get("usage") or {}, answer.get("model"), seconds,
                      len(choices), seed) for text, reason in choices]


def _choices(answer, api: str, path: str) -> list[tuple[str, str]]:
    """(text, finish_reason) of each choice, or a one-line refusal of an answer that is not the API's."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        raise EndpointError(f"{path} answered without choices ({str(answer)[:160]!r}): is this an "
                            "OpenAI-compatible server?")
    out = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
        text = (choice.get("message") or {}).get("content") if api == "chat" and isinstance(choice, dict) \
            else choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(text, str):
            raise EndpointError(f"{path} answered a choice without text ({str(choice)[:160]!r})")
        out.append((text, choice.get("finish_reason")))
    return out


async def _replies(urls: list[str], model: str, prompts: list, params: SamplingParams, api: str,
                   api_key: str | None, policy: RetryPolicy | None, concurrency: int) -> list[Reply]:
    limit = asyncio.Semaphore(concurrency)
    async with ReplicaPool(urls, api_key, policy) as pool:
        client = ChatClient(pool, model, api)

        async def one(prompt):
            async with limit:
                return (await client.complete(prompt, 1, params, [params.seed]))[0]

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def chat_replies(urls: list[str], model: str, prompts: list, params: SamplingParams | None = None, *,
                 api: str = "chat", api_key: str | None = None, policy: RetryPolicy | None = None,
                 concurrency: int = 8) -> list[Reply]:
    """One reply per prompt (messages, or text with api="completions"), `concurrency` in flight; for judges."""
    params = params or SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=512)
    return asyncio.run(_replies(urls, model, prompts, params, api, api_key, policy, concurrency))


def chat_reply(urls: list[str], model: str, prompt, params: SamplingParams | None = None, **kwargs) -> Reply:
    """One reply to one prompt (see `chat_replies`)."""
    return chat_replies(urls, model, [prompt], params, **kwargs)[0]
