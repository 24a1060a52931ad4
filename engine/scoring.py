"""Score many replies with a reward model: encode once, pack by token budget, run without grad.

`Scorer.score` groups conversations into packed rows of at most `max_tokens_per_batch` tokens
(longest first, so similar lengths share a row and the number of rows stays small) and returns
the scores in input order. `score_one_by_one` is the naive baseline for benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import torch

from engine.data import ScoringItem
from engine.errors import EngineError
from engine.packing import Unit, pad_sequences, prefix_units
from engine.precision import resolve_precision
from engine.reward_model import RewardModel
from engine.reward_pass import ScoringModel, reward_token_pass, single_units

Progress = Callable[[int, int], None]  # (items done, items total)


class Scorer:
    """Batched, packed scoring with a reward model held in eval mode.

    Replies to the same prompt share their leading tokens (system prompt, prompt, assistant
    header). With `share_prefixes` (default: on when the model uses the packed_sdpa kernel) those
    tokens run once per batch and every reply attends to them: exact, since causal attention
    makes a prefix's hidden states independent of what follows, and for Best-of-N with N replies
    per prompt it removes up to (N-1)/N of the prompt work.
    """

    def __init__(self, reward_model: ScoringModel, max_length: int = 2048, precision: str = "fp32",
                 share_prefixes: bool | None = None):
        self.reward_model = reward_model.eval()
        self.encoder = reward_model.encoder(max_length)
        self.precision = resolve_precision(precision, reward_model.device)
        reads = reward_model.reads_shared_prefixes
        self.share_prefixes = reads if share_prefixes is None else share_prefixes
        if self.share_prefixes and not reads:
            raise EngineError(f"prefix sharing needs the packed_sdpa kernel, which {type(reward_model).__name__} "
                              "does not run")

    def score(self, items: Sequence[ScoringItem], max_tokens_per_batch: int = 8192,
              progress: Progress | None = None) -> list[float]:
        """One score per item, in input order."""
        return self.score_encoded_items(items, self.encoder.encode_many(items), max_tokens_per_batch, progress)

    def score_encoded_items(self, items: Sequence[ScoringItem], encoded: list[list[int]],
                            max_tokens_per_batch: int = 8192, progress: Progress | None = None) -> list[float]:
        """`score` for items already encoded by `self.encoder` (a server encodes as requests arrive)."""
        if max_tokens_per_batch < self.encoder.max_length:
            raise EngineError(f"max_tokens_per_batch ({max_tokens_per_batch}) must be at least max_length "
                              f"({self.encoder.max_length}), or a long conversation fits no batch")
        units = plan_units(items, encoded, max_tokens_per_batch) if self.share_prefixes else single_units(encoded)
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, len(encoded))

        return reward_token_pass(self.reward_model, units, max_tokens_per_batch, self.precision,
                                 share=self.share_prefixes, on_batch=report).tolist()

    def score_encoded(self, sequences: Sequence[Sequence[int]]) -> list[float]:
        """Scores of already encoded conversations, all packed into one row."""
        return reward_token_pass(self.reward_model, single_units(sequences), sum(len(s) for s in sequences),
                                 self.precision, share=False).tolist()


def plan_units(items: Sequence[ScoringItem], encoded: list[list[int]], budget: int) -> list[Unit]:
    """Group conversations by prompt into (shared prefix, [(item index, suffix ids)]) units
    (`packing.prefix_units`; left truncation simply shortens or removes a prompt's prefix)."""
    by_prompt: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_prompt.setdefault(json.dumps(item.prompt, sort_keys=True), []).append(i)
    return prefix_units(by_prompt.values(), encoded, budget)


@torch.no_grad()
def score_one_by_one(reward_model: RewardModel, items: Sequence[ScoringItem], max_length: int = 2048) -> list[float]:
    """The naive baseline: one forward pass per conversation, through the stock padded path."""
    reward_model.eval()
    encoder = reward_model.encoder(max_length)
    scores = []
    for item in items:
        batch = pad_sequences([encoder.encode(item.prompt, item.response)], reward_model.tokenizer.pad_token_id)
        scores.append(reward_model.forward_padded(batch.to(reward_model.device)).item())
    return scores


def scoring_device(device: str = "auto") -> str:
    """auto = this process's GPU (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    import os

    if device == "auto":
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    return device


def load_scorer(path: str, max_length: int = 2048, precision: str = "auto", device: str = "auto", spec=None,
                trust_remote_code: bool = False) -> Scorer:
    """A Scorer for the reward model at `path` on `scoring_device(device)` (precision: see `engine.precision`).

    `spec` (an `engine.rm_formats.RewardFormat`) says how to read it; by default its format is detected.
    `trust_remote_code` lets a model that ships its own Python code (InternLM2) run it.
    """
    from engine.foreign_rm import load_reward_model
    from engine.rm_formats import inspect_reward_model

    if spec is None:
        spec = inspect_reward_model(path, trust_remote_code=trust_remote_code)
    model = load_reward_model(path, spec, device=scoring_device(device), trust_remote_code=trust_remote_code)
    return Scorer(model, max_length=max_length, precision=precision)
