"""A reward model as a TRL reward function: `reward_function(rm=NAME)` or `reward_function(url=URL)`.

    from trl import GRPOTrainer
    from workbench.models.rewards import reward_function
    trainer = GRPOTrainer(model=..., reward_funcs=reward_function(rm="demo-rm"), ...)

The callable has TRL's signature, `(prompts, completions, **kwargs) -> list[float]`, in both of
TRL's forms: conversational (prompts are message lists, completions are
`[{"role": "assistant", "content": ...}]`) and standard (plain strings; a prompt then becomes one
user message). Local: the model loads once, on the first call, and scores through the engine's
packed scorer. Remote: each call posts the conversations to a `workbench serve` server's
`/v1/score`, with the trainer's global step so logged rollouts carry it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from engine.data import ScoringItem
from workbench.errors import WorkbenchError
from workbench.generate.finite_scores import first_non_finite


def _conversation(prompt, completion) -> tuple[list[dict], str]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if isinstance(completion, str):
        return messages, completion
    if isinstance(completion, list) and completion and all(isinstance(m, dict) for m in completion):
        replies = [m.get("content", "") for m in completion if m.get("role") == "assistant"]
        if replies and all(isinstance(r, str) for r in replies):
            return messages, "".join(replies)
    raise WorkbenchError(f"a completion must be a string or a list of assistant messages, got {completion!r:.80}")


def _step(kwargs) -> int | None:
    state = kwargs.get("trainer_state")
    return getattr(state, "global_step", None)


class LocalReward:
    """Scores in this process; the reward model loads on the first call."""

    def __init__(self, rm: str, store=None, max_length: int = 2048, max_tokens_per_batch: int = 8192,
                 precision: str = "auto", trust_remote_code: bool = False):
        from workbench.models.reward_models import resolve_reward_model
        from workbench.store import Store

        self.model = resolve_reward_model(store or Store(), rm, trust_remote_code)
        # refused now if it has no weights or they changed since registration; loaded on the first call
        self._load = self.model.scorer_loader(max_length=max_length, precision=precision,
                                              trust_remote_code=trust_remote_code)
        self.__name__ = f"reward_{self.model.name}"
        self.max_tokens_per_batch = max_tokens_per_batch
        self.scorer = None

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        if self.scorer is None:
            self.scorer = self._load()
        items = [ScoringItem(*_conversation(p, c)) for p, c in zip(prompts, completions, strict=True)]
        scores = self.scorer.score(items, max_tokens_per_batch=self.max_tokens_per_batch)
        if first_non_finite(scores) is not None:
            raise WorkbenchError("the reward model gave a non-finite score")
        return scores


class RemoteReward:
    """Scores through a `workbench serve` server's `/v1/score`."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0):
        base = url.rstrip("/")
        for suffix in ("/v1/score", "/get_reward"):
            base = base[:-len(suffix)] if base.endswith(suffix) else base
        self.url, self.api_key, self.timeout = base + "/v1/score", api_key, timeout
        self.__name__ = "reward_remote"

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        conversations = [[*m, {"role": "assistant", "content": r}]
                         for m, r in (_conversation(p, c) for p, c in zip(prompts, completions, strict=True))]
        body = json.dumps({"conversations": conversations, "step": _step(kwargs)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                scores = json.loads(response.read())["scores"]
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:200]
            raise WorkbenchError(f"reward server {self.url} answered {error.code}: {detail}") from None
        except urllib.error.URLError as error:
            raise WorkbenchError(f"cannot reach the reward server at {self.url}: {error.reason}") from None
        if len(scores) != len(conversations):
            raise WorkbenchError(f"reward server sent {len(scores)} scores for {len(conversations)} completions")
        return [float(s) for s in scores]


def reward_function(rm: str | None = None, url: str | None = None, *, store=None, api_key: str | None = None,
                    max_length: int = 2048, precision: str = "auto", trust_remote_code: bool = False):
    """A TRL reward function scoring with reward model `rm` (local) or the server at `url` (remote).

    `trust_remote_code` lets a local reward model that ships its own Python code (InternLM2) run it."""
    if (rm is None) == (url is None):
        raise WorkbenchError("give exactly one of rm=NAME (score here) or url=URL (a `workbench serve` server)")
    if url is not None:
        return RemoteReward(url, api_key=api_key)
    return LocalReward(rm, store=store, max_length=max_length, precision=precision,
                       trust_remote_code=trust_remote_code)
