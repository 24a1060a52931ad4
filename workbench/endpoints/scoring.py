"""`workbench score --endpoint URL --api workbench|openrlhf|vllm`: a reward model that a server runs.

Three request shapes, one labeler in the store:

    workbench  POST /v1/score   {"conversations": [[...messages, {"role": "assistant", ...}], ...]}  -> {"scores"}
    openrlhf   POST /get_reward {"query": [full text], "prompts": [prompt text]}                   -> {"rewards"}
               (texts rendered with the chat template of --prompt-template; OpenRLHF's serve_rm, or
               `workbench serve`, which speaks it too)
    vllm       POST /pooling    {"model": M, "messages": [...]}, one conversation per request      -> {"data": [{"data"}]}
               (a reward/classification model under `vllm serve --runner pooling`: one score, or per-token
               scores of which the last is taken)

The scores land under a labeler registered like imported scorers (no weights, `config.endpoint`
names the API, the model and the URLs): `pairs build --rm`, `rm compare` and export manifests treat
it as any reward model. Its id is the served weights' id when the server tells it (`workbench serve`'s
/health), else a hash of the API, the model name and the URLs. Batches go out `concurrency` at a
time with `ReplicaPool`'s retries; the chunks of `workbench.generate.scoring` are committed one by one, so a
rerun scores only what is missing.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit

from engine.data import ScoringItem
from engine.progress import progress_bar
from workbench import ids
from workbench.endpoints.replicas import EndpointError, ReplicaPool
from workbench.endpoints.sampling import ServedModel, served_model_ids
from workbench.errors import WorkbenchError
from workbench.models.registered_model import RegisteredModel
from workbench.store.runs import recorded_run
from workbench.generate.scoring import ScoreResult, _close_if_complete, _score_chunk, pending_chunks
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries

SCORE_APIS = ("workbench", "openrlhf", "vllm")
PATHS = {"workbench": "/v1/score", "openrlhf": "/get_reward", "vllm": "/pooling"}


class RemoteScorer:
    """`engine.scoring.Scorer`'s `score(items)` over a remote reward model (batched, concurrent, retried)."""

    def __init__(self, served: ServedModel, api_key: str | None, batch_size: int = 32, template=None):
        self.served, self.api_key, self.batch_size, self.template = served, api_key, batch_size, template

    def score(self, items: list[ScoringItem], max_tokens_per_batch=None, progress=None) -> list[float]:
        return asyncio.run(self._score(items, progress))

    async def _score(self, items: list[ScoringItem], progress) -> list[float]:
        size = 1 if self.served.api == "vllm" else self.batch_size
        batches = [items[i:i + size] for i in range(0, len(items), size)]
        limit, done = asyncio.Semaphore(self.served.concurrency), [0]
        async with ReplicaPool(self.served.urls, self.api_key, self.served.retry,
                               max_connections=self.served.concurrency) as pool:
            async def one(batch):
                async with limit:
                    scores = await self._request(pool, batch)
                done[0] += len(batch)
                if progress:
                    progress(done[0], len(items))
                return scores

            results = await asyncio.gather(*(one(b) for b in batches))
        return [s for batch in results for s in batch]

    async def _request(self, pool: ReplicaPool, batch: list[ScoringItem]) -> list[float]:
        api, path = self.served.api, PATHS[self.served.api]
        if api == "workbench":
            answer = await pool.post(path, {"conversations": [list(i.prompt) + [{"role": "assistant",
                                                                                  "content": i.response}]
                                                              for i in batch]})
            return _numbers(answer, "scores", len(batch), path)
        if api == "openrlhf":
            prompts = [self.template.apply_chat_template(list(i.prompt), tokenize=False, add_generation_prompt=True)
                       for i in batch]
            queries_ = [self.template.apply_chat_template(list(i.prompt) + [{"role": "assistant", "content": i.response}],
                                                          tokenize=False) for i in batch]
            return _numbers(await pool.post(path, {"query": queries_, "prompts": prompts}), "rewards", len(batch), path)
        item = batch[0]
        body = {"messages": list(item.prompt) + [{"role": "assistant", "content": item.response}]}
        if self.served.model:
            body["model"] = self.served.model
        return [pooled_score(await pool.post(path, body), path)]


def _numbers(answer, key: str, expected: int, path: str) -> list[float]:
    values = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(values, list) or len(values) != expected or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise EndpointError(f"{path} answered without {expected} numbers under '{key}' ({str(answer)[:160]!r}): "
                            "is --api right for this server?")
    return [float(v) for v in values]


def pooled_score(answer, path: str = "/pooling") -> float:
    """One score from vLLM's pooling answer: a single value, or the last token's of per-token scores."""
    data = answer.get("data") if isinstance(answer, dict) else None
    value = data[0].get("data") if isinstance(data, list) and data and isinstance(data[0], dict) else None
    if isinstance(value, list) and value and isinstance(value[-1], list):
        value = value[-1]  # token-level rewards (ALL pooling): the score at the last token
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise EndpointError(f"{path} answered no single score ({str(answer)[:160]!r}): serve a reward or "
                            "one-label classification model with `vllm serve MODEL --runner pooling`")
    return float(value)


async def _identity(served: ServedModel, api_key: str | None) -> dict:
    """What the server says it serves: workbench's /health (the weights' id), vLLM's /v1/models."""
    if served.api == "workbench":
        async with ReplicaPool(served.urls[:1], api_key, served.retry) as pool:
            health = await pool.get("/health")
        if not isinstance(health, dict) or not health.get("rm_id"):
            raise EndpointError(f"{served.urls[0]}/health does not name a reward model: is it `workbench serve`?")
        return {"model": str(health.get("model") or served.model), "served_rm_id": str(health["rm_id"])}
    if served.api == "vllm":
        listed = await served_model_ids(served, api_key)
        model = served.model or (listed[0] if listed and len(listed) == 1 else None)
        if model is None:
            raise WorkbenchError(f"name the model with --model: {served.urls[0]}/v1/models lists {listed}")
        return {"model": model}
    return {"model": served.model or "reward-model"}


def labeler_name(model: str, url: str) -> str:
    """`MODEL-at-HOST-PORT`, in characters that NAME@VERSION lookups read back."""
    where = urlsplit(url)
    raw = f"{model.rstrip('/').split('/')[-1]}-at-{where.hostname}-{where.port or ''}".rstrip("-")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw.replace("@", "-v"))


def register_endpoint_labeler(store: Store, served: ServedModel, identity: dict,
                              name: str | None) -> RegisteredModel:
    """The labeler the endpoint's scores go under (registered once; the same server finds it again)."""
    urls = sorted(u.rstrip("/") for u in served.urls)
    key = identity.get("served_rm_id") or "\n".join([identity["model"], *urls, served.prompt_template or ""])
    rm_id = ids.digest("endpoint-scorer", served.api, key)
    config = {"external": True, "endpoint": {"api": served.api, "urls": urls, "prompt_template": served.prompt_template}
              | identity}

    def write(con) -> RegisteredModel:
        if queries.get_reward_model(con, rm_id) is None:
            queries.insert_reward_model(con, rm_id, name or labeler_name(identity["model"], urls[0]), None,
                                        config, None)
        return queries.get_reward_model(con, rm_id)

    return store.write(write)


def score_with_endpoint(store: Store, served: ServedModel, *, name: str | None = None,
                        selection: PromptSelection | None = None, generation_run: str | None = None,
                        chunk_size: int = 1024, batch_size: int = 32, progress: bool = True) -> ScoreResult:
    """Score every selected response the endpoint's labeler has not scored yet; returns counts."""
    if served.api not in SCORE_APIS:
        raise WorkbenchError(f"--api {served.api}: reward endpoints speak one of {', '.join(SCORE_APIS)}")
    if served.concurrency < 1 or batch_size < 1:
        raise WorkbenchError("--concurrency and --batch-size must be at least 1")
    template = _template(served)
    selection = selection or PromptSelection()
    api_key = served.api_key()
    model = register_endpoint_labeler(store, served, asyncio.run(_identity(served, api_key)), name)
    scorer = RemoteScorer(served, api_key, batch_size, template)
    config = {"rm": model.as_reference(),
              "selection": selection.as_dict(), "generation_run": generation_run, "endpoint": served.api}
    run_id = ids.run_id("scoring", config)
    record = config | {"endpoint": served.provenance() | {"api": served.api}}
    with recorded_run(store, run_id, "scoring", record):
        with store.connect() as con:
            selected, already = queries.count_scored(con, model.rm_id, selection.as_dict(), generation_run)
        started, scored = time.perf_counter(), 0
        with progress_bar(selected, f"scoring with {model.label}", " responses", progress, initial=already) as bar:
            for chunk in pending_chunks(store, model.rm_id, selection, generation_run, (0, 1), chunk_size):
                reported = bar.n
                scored += _score_chunk(store, scorer, chunk, model, run_id, 0,
                                       lambda done, total, start=reported: bar.update(start + done - bar.n))
        seconds = time.perf_counter() - started
        result = ScoreResult(run_id, model.label, scored, already, selected, round(seconds, 2),
                             round(scored / seconds, 2) if seconds > 0 else 0.0)
        store.write(lambda con: _close_if_complete(con, run_id, model.rm_id, selection, generation_run))
    return result


def _template(served: ServedModel):
    if served.api != "openrlhf":
        return None
    if not served.prompt_template:
        raise WorkbenchError("--api openrlhf sends full texts: name the tokenizer whose chat template renders "
                             "them with --prompt-template DIR (the reward model's)")
    from transformers import AutoTokenizer

    from engine.backbone import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(served.prompt_template))
