"""Plain data that crosses the `workbench` → `engine` boundary.

A conversation is a list of chat messages (`{"role": ..., "content": ...}`); a reward model
scores a prompt plus one assistant reply. The store converts its rows into these and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class PreferencePair:
    """One labelled comparison: `chosen` is preferred over `rejected` for `prompt`."""

    prompt: list[Message]
    chosen: str
    rejected: str
    id: str | None = None


@dataclass(frozen=True)
class ScoringItem:
    """One reply to score in the context of its prompt."""

    prompt: list[Message]
    response: str
    id: str | None = None


@dataclass
class SamplingParams:
    """How a policy samples; together with the seed and sample index it fixes a sample."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0


@dataclass
class Sample:
    """One generated reply with what is needed to reproduce and judge it."""

    prompt_index: int
    sample_index: int
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (EOS) or "length" (hit max_new_tokens)
    seed: int
    time_s: float = 0.0
    token_ids: list[int] = field(default_factory=list, repr=False)
