"""Score many replies with a reward model: encode once, sort by length, pack, run without grad.

`Scorer.score` groups conversations into packed rows of at most `max_tokens_per_batch` tokens
(longest first, so similar lengths share a row and the number of rows stays small) and returns
the scores in input order. `score_one_by_one` is the naive baseline for benchmarks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from engine.data import ScoringItem
from engine.errors import EngineError
from engine.packing import group_by_token_budget, pack_sequences, pad_sequences
from engine.reward_model import RewardModel

Progress = Callable[[int, int], None]  # (items done, items total)


class Scorer:
    """Batched, packed scoring with a reward model held in eval mode."""

    def __init__(self, reward_model: RewardModel, max_length: int = 2048, bf16: bool = False):
        self.reward_model = reward_model.eval()
        self.encoder = reward_model.encoder(max_length)
        self.bf16 = bf16

    def score(self, items: Sequence[ScoringItem], max_tokens_per_batch: int = 8192,
              progress: Progress | None = None) -> list[float]:
        """One score per item, in input order."""
        if max_tokens_per_batch < self.encoder.max_length:
            raise EngineError(f"max_tokens_per_batch ({max_tokens_per_batch}) must be at least max_length "
                              f"({self.encoder.max_length}), or a long conversation fits no batch")
        encoded = self.encoder.encode_many(items)
        scores = [0.0] * len(encoded)
        done = 0
        for group in group_by_token_budget([len(ids) for ids in encoded], max_tokens_per_batch):
            values = self.score_encoded([encoded[i] for i in group])
            for i, value in zip(group, values):
                scores[i] = value
            done += len(group)
            if progress:
                progress(done, len(encoded))
        return scores

    @torch.no_grad()
    def score_encoded(self, sequences: Sequence[Sequence[int]]) -> list[float]:
        """Scores of already encoded conversations, all packed into one row."""
        rm = self.reward_model
        batch = pack_sequences(sequences, pad_token_id=rm.tokenizer.pad_token_id).to(rm.device)
        with self._autocast():
            return rm.forward_packed(batch).float().tolist()

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.reward_model.device.type, dtype=torch.bfloat16)


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
