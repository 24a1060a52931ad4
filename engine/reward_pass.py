"""What every reward model offers the engine (`ScoringModel`), and the one no-grad pass over it.

Three kinds of reward model score conversations: the workbench's own (`engine.reward_model.RewardModel`),
a foreign decoder + value head run on packed rows (`engine.foreign_rm.PackedRewardModel`: hf,
openrlhf), and a model run through its own forward (`engine.foreign_rm.WholeModelRewardModel`:
remote code, encoders). `ScoringModel` is what they share; `reward_token_pass` is the single
no-grad forward over units of conversations that the scorer (scores), the feature cache
(states entering the final norm) and the head probe (states the value head reads) all use:

    scores = reward_token_pass(rm, units, budget, "fp32")                      # (N,) float32
    states = reward_token_pass(rm, units, budget, "fp32", read=rm.reward_hidden)  # (N, H)

A unit is (shared prefix ids, [(conversation index, suffix ids), ...]) (`engine.packing.Unit`); the
indices run over 0..N-1 and the result is in index order. With `rm.reads_shared_prefixes` a
unit's prefix runs once for all its suffixes; otherwise every conversation is packed whole.
The model runs in eval mode for the pass and returns to the mode it was in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from engine.conversation import ConversationEncoder
from engine.errors import EngineError
from engine.packing import EncodedPair, PackedBatch, PaddedBatch, Unit, common_prefix_length, packed_unit_batches
from engine.precision import autocast

BatchRead = Callable[[PackedBatch], torch.Tensor]  # (N, ...) per conversation of the row, in packing order


@runtime_checkable
class ScoringModel(Protocol):
    """A reward model as the engine scores it: an encoder that ends conversations at the token the
    value is read at, and forwards that give one score (or hidden state) per conversation."""

    tokenizer: object

    @property
    def device(self) -> torch.device: ...

    @property
    def training(self) -> bool: ...

    @property
    def reads_shared_prefixes(self) -> bool:
        """Whether its attention kernel runs a shared prefix once for the segments that continue it."""
        ...

    def encoder(self, max_length: int) -> ConversationEncoder: ...

    def train(self, mode: bool = True) -> ScoringModel: ...

    def eval(self) -> ScoringModel: ...

    def forward_packed(self, batch: PackedBatch) -> torch.Tensor:
        """Scores (N,) of the conversations in one packed row, in packing order."""
        ...

    def forward_padded(self, batch: PaddedBatch) -> torch.Tensor:
        """Scores (N,) of right-padded conversations, one per row."""
        ...

    def reward_hidden(self, batch: PackedBatch | PaddedBatch) -> torch.Tensor:
        """Final hidden states (N, H) at each conversation's reward token: what the value head reads
        (an EngineError for a model that runs its own forward)."""
        ...


@torch.no_grad()
def reward_token_pass(rm: ScoringModel, units: Sequence[Unit], budget: int, precision: str,
                      read: BatchRead | None = None, share: bool | None = None,
                      on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """`read(batch)` (default: the scores) of every conversation in `units`, float32 on the CPU, in
    index order; micro-batches of at most `budget` tokens. `share` (default `rm.reads_shared_prefixes`)
    runs each unit's prefix once. `on_batch(n)` after each micro-batch of n conversations."""
    read = read or rm.forward_packed
    share = rm.reads_shared_prefixes if share is None else share
    if share and not rm.reads_shared_prefixes:
        raise EngineError(f"{type(rm).__name__} cannot run a shared prefix once (it needs the packed_sdpa kernel)")
    n = sum(len(members) for _, members in units)
    out: torch.Tensor | None = None
    was_training = rm.training
    rm.eval()
    try:
        for order, batch in packed_unit_batches(units, budget, share, rm.tokenizer.pad_token_id):
            with autocast(precision, rm.device):
                values = read(batch.to(rm.device)).float().cpu()  # (len(order), ...)
            if out is None:
                out = torch.zeros((n, *values.shape[1:]), dtype=torch.float32)
            out[order] = values
            if on_batch is not None:
                on_batch(len(order))
    finally:
        rm.train(was_training)
    return out if out is not None else torch.zeros(0)


def single_units(sequences: Sequence[Sequence[int]]) -> list[Unit]:
    """One unit per conversation, nothing shared."""
    return [([], [(i, list(s))]) for i, s in enumerate(sequences)]


def pair_units(pairs: Sequence[EncodedPair], share: bool) -> list[Unit]:
    """One unit per pair: conversations 2i (chosen) and 2i + 1 (rejected), their common start as the
    prefix where `share` (the layout `engine.packing.pack_pairs` trains on)."""
    units: list[Unit] = []
    for i, (chosen, rejected) in enumerate(pairs):
        n = common_prefix_length([chosen, rejected]) if share else 0
        units.append((list(chosen[:n]), [(2 * i, list(chosen[n:])), (2 * i + 1, list(rejected[n:]))]))
    return units
