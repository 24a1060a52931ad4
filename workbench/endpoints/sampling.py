"""`workbench sample --endpoint URL --model NAME`: N replies per prompt from a policy that a server runs.

The same store contract as in-process sampling (`workbench.generate.sampling`): a run is identified by the
served model's name, the API, N, the sampling parameters and the prompt selection (not by the URLs,
so adding or replacing replicas continues the same run); each sample is keyed by (run, prompt,
sample index) and inserted only if absent, so a resumed or retried run never stores a sample twice;
finished samples are committed every `flush_every`, and the flags are computed at the end.

Requests go out `concurrency` at a time, one prompt per request asking for all its missing samples
(`ChatClient.complete` asks again when a server returns fewer choices). The sample indexes a prompt
still lacks are filled in order; the request for them carries the seed of the first one
(`engine.generation.sample_seed`, as in-process), so servers that honour `seed` repeat a run.
The run's record names the endpoints, the model ids the server answered with, the settings and the
token usage, never the API key.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field

from engine.data import Sample, SamplingParams
from engine.progress import progress_bar
from workbench import ids
from workbench.endpoints.chat import APIS, ChatClient
from workbench.endpoints.replicas import EndpointError, ReplicaPool, RetryPolicy
from workbench.errors import WorkbenchError
from workbench.store.runs import recorded_run
from workbench.generate.sampling import SampleResult, _flag_run, _response_rows
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries


@dataclass
class ServedModel:
    """A model behind one or more replica URLs, and how to talk to it."""

    urls: list[str]
    model: str | None                   # None: the one model the server lists
    api: str = "chat"
    api_key_env: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 16
    prompt_template: str | None = None  # tokenizer (dir or smollm2) rendering text prompts for api="completions"

    def api_key(self) -> str | None:
        """The key from the named variable; the key itself is never recorded."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise WorkbenchError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty")
        return key

    def check(self) -> None:
        if self.api not in APIS:
            raise WorkbenchError(f"--api {self.api}: use one of {', '.join(APIS)}")
        if self.concurrency < 1:
            raise WorkbenchError("--concurrency must be at least 1")
        if self.api == "completions" and not self.prompt_template:
            raise WorkbenchError("--api completions sends text prompts: name the policy's tokenizer with "
                                 "--prompt-template DIR, whose chat template renders them")

    def provenance(self) -> dict:
        return {"endpoints": [u.rstrip("/") for u in self.urls], "model": self.model, "api": self.api,
                "authenticated": self.api_key_env is not None, "retry": asdict(self.retry),
                "concurrency": self.concurrency, "prompt_template": self.prompt_template}


@dataclass
class EndpointSampleResult(SampleResult):
    usage: dict = field(default_factory=dict)
    requests: dict = field(default_factory=dict)
    completion_tokens_per_s: float = 0.0


def check_params(params: SamplingParams, n: int) -> None:
    if n < 1:
        raise WorkbenchError("--n must be at least 1")
    if params.temperature < 0 or not 0 < params.top_p <= 1 or params.max_new_tokens < 1:
        raise WorkbenchError("sampling settings out of range: --temperature >= 0, 0 < --top-p <= 1, "
                             "--max-new-tokens >= 1")


def sample_from_endpoints(store: Store, served: ServedModel, n: int, *, params: SamplingParams | None = None,
                          selection: PromptSelection | None = None, flush_every: int = 64,
                          progress: bool = True) -> EndpointSampleResult:
    """Fetch the missing samples of this run from the endpoints and store them; returns counts and usage."""
    params, selection = params or SamplingParams(), selection or PromptSelection()
    check_params(params, n)
    served.check()
    api_key = served.api_key()
    with store.connect() as con:
        prompts = queries.select_prompts(con, selection.as_dict())
    if not prompts:
        raise WorkbenchError("no prompts match the selection: import some with `workbench import --format prompts`")
    listed = asyncio.run(served_model_ids(served, api_key))  # a wrong key or URL is refused before the run starts
    served.model = served.model or only_listed_model(listed, served.urls[0])
    config = {"policy": {"endpoint_model": served.model, "api": served.api}, "n": n, "params": asdict(params),
              "selection": selection.as_dict()}
    run_id = ids.run_id("generation", config)
    record = config | {"endpoint": served.provenance(), "served_models": listed}
    with recorded_run(store, run_id, "generation", record) as run:
        with store.connect() as con:
            done = set(queries.generated_samples(con, run_id))
        todo = {pid: [s for s in range(n) if (pid, s) not in done] for pid, _ in prompts}
        todo = {pid: missing for pid, missing in todo.items() if missing}
        missing = sum(len(m) for m in todo.values())
        started = time.perf_counter()
        usage, requests = {}, {}
        if todo:
            texts = _prompt_inputs(served, {pid: m for pid, m in prompts if pid in todo})
            with progress_bar(len(prompts) * n, f"sampling from {served.model}", " samples", progress,
                              initial=len(prompts) * n - missing) as bar:
                usage, requests = asyncio.run(_fetch(store, run_id, served, api_key, texts, todo, params,
                                                     flush_every, bar.update))
        _flag_run(store, run_id)
        seconds = time.perf_counter() - started
        result = EndpointSampleResult(run_id, len(prompts), n, missing, n * len(prompts) - missing,
                                      n * len(prompts), round(seconds, 2), usage, requests,
                                      round(usage.get("completion_tokens", 0) / seconds, 1) if seconds else 0.0)
        run.summary = result.as_dict()
    return result


async def served_model_ids(served: ServedModel, api_key: str | None) -> list[str] | None:
    """The model ids the first replica lists (GET /v1/models); None if it has no such route."""
    policy = RetryPolicy(**(asdict(served.retry) | {"max_attempts": min(served.retry.max_attempts, 3)}))
    async with ReplicaPool(served.urls, api_key, policy) as pool:
        try:
            listed = await pool.get("/v1/models")
        except EndpointError as error:
            if "HTTP 404" in str(error):
                return None
            raise
    data = listed.get("data") if isinstance(listed, dict) else None
    return [str(m.get("id")) for m in data if isinstance(m, dict)] if isinstance(data, list) else None


def only_listed_model(listed: list[str] | None, url: str) -> str:
    if listed and len(listed) == 1:
        return listed[0]
    known = f"it lists {', '.join(listed)}" if listed else "it lists none"
    raise WorkbenchError(f"name the model with --model: {url}/v1/models does not list exactly one ({known})")


def _prompt_inputs(served: ServedModel, messages_json: dict[str, str]) -> dict:
    """What each request carries: the messages (chat), or the text the chat template renders (completions)."""
    messages = {pid: json.loads(m) for pid, m in messages_json.items()}
    if served.api == "chat":
        return messages
    from transformers import AutoTokenizer

    from engine.backbone import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(served.prompt_template))
    return {pid: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for pid, m in messages.items()}


async def _fetch(store: Store, run_id: str, served: ServedModel, api_key: str | None, inputs: dict,
                 todo: dict[str, list[int]], params: SamplingParams, flush_every: int, update) -> tuple[dict, dict]:
    """Every prompt's missing samples, `concurrency` requests in flight, committed every `flush_every`."""
    from engine.generation import sample_seed

    pending: list[tuple[str, Sample]] = []
    limit = asyncio.Semaphore(served.concurrency)

    def flush() -> None:
        if pending:
            table = _response_rows(run_id, [pid for pid, _ in pending], [s for _, s in pending])
            pending.clear()
            store.write(lambda con: queries.insert_new(con, "responses", table))

    async with ReplicaPool(served.urls, api_key, served.retry, max_connections=served.concurrency) as pool:
        client = ChatClient(pool, served.model, served.api)

        async def one_prompt(pid: str, indexes: list[int]) -> None:
            async with limit:
                replies = await client.complete(inputs[pid], len(indexes), params,
                                                [sample_seed(params.seed, pid, i) for i in indexes])
            for index, reply in zip(indexes, replies):
                tokens = reply.usage.get("completion_tokens") if reply.choices_in_request == 1 else None
                pending.append((pid, Sample(0, index, reply.text, tokens, reply.finish_reason, reply.seed,
                                            round(reply.seconds, 3))))
            update(len(indexes))
            if len(pending) >= flush_every:
                flush()

        tasks = [asyncio.ensure_future(one_prompt(pid, indexes)) for pid, indexes in todo.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            flush()  # what arrived before a failure is kept: the rerun fetches only the rest
    return client.usage.as_dict(), pool.stats.as_dict() | {"replicas": pool.urls}
