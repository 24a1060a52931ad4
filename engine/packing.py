"""Pack encoded conversations into one row per micro-batch, or pad them (the baseline).

Packed layout: conversations back to back in one (1, T) row, in the order chosen, rejected,
chosen, rejected, ...; position ids restart at 0 for each conversation; `cu_seqlens` (int32,
leading 0) marks the boundaries for varlen attention; `reward_positions` is the last token of
each conversation (the reward token the encoder appended). A padded batch holds the same
conversations one per row, right-padded, and yields scores in the same order.

Grouping: `group_by_token_budget` splits items (pairs, or single conversations when scoring)
into micro-batches of at most `max_tokens` tokens with best-fit-decreasing bin packing
(largest item first, into the fullest micro-batch that still has room; 100k items take ~0.3 s). A pair
is never split. The trainer sums the loss over pairs and divides by the number of pairs in the
whole optimizer step, so how one step's pairs are grouped does not change its gradient: we may
pick the grouping that wastes least without biasing training. Randomness comes from which
pairs make up a step, not from their order inside it.

Shared prompts: a pair's chosen and rejected conversations start with the same tokens (system
prompt, prompt, assistant header). `pack_pairs(..., share_prefix=True)` stores those once per pair
and lets both replies attend to them (`pack_shared_prefixes`); each reply's hidden states, and so
its score and its gradients, equal those of its whole conversation run alone. On hh-rlhf this
computes 63% of the tokens the two whole conversations hold. Only the "packed_sdpa" kernel reads
the layout (not flash-attn, not sequence parallelism).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from engine.errors import EngineError

EncodedPair = tuple[list[int], list[int]]  # (chosen ids, rejected ids)


@dataclass
class PackedBatch:
    """Conversations packed into one row, no padding (except an optional trailing dummy segment)."""

    input_ids: torch.Tensor  # (1, T) long
    position_ids: torch.Tensor  # (1, T) long, restarting at 0 per segment
    cu_seqlens: torch.Tensor  # (S + 1,) int32, leading 0; a padding segment, if any, is the last
    reward_positions: torch.Tensor  # (N,) long: index in the row of each conversation's reward token
    max_seqlen: int  # longest segment
    n_pairs: int  # N == 2 * n_pairs for pair batches; 0 when packing single conversations
    n_tokens: int  # real tokens, padding excluded (pairs sharing a prefix: both whole conversations)
    # Shared-prefix layout: for each segment, the earlier segment it continues, or -1.
    segment_prefix: list[int] | None = None

    def to(self, device) -> PackedBatch:
        return PackedBatch(self.input_ids.to(device), self.position_ids.to(device), self.cu_seqlens.to(device),
                           self.reward_positions.to(device), self.max_seqlen, self.n_pairs, self.n_tokens,
                           self.segment_prefix)


@dataclass
class PaddedBatch:
    """One conversation per row, padded on the right (the baseline layout)."""

    input_ids: torch.Tensor  # (N, L) long
    attention_mask: torch.Tensor  # (N, L) long, 1 on real tokens
    reward_positions: torch.Tensor  # (N,) long: last real token of each row
    n_pairs: int
    n_tokens: int

    def to(self, device) -> PaddedBatch:
        return PaddedBatch(self.input_ids.to(device), self.attention_mask.to(device),
                           self.reward_positions.to(device), self.n_pairs, self.n_tokens)


def pack_sequences(sequences: Sequence[Sequence[int]], pad_to_multiple_of: int = 1, pad_token_id: int = 0,
                   n_pairs: int = 0) -> PackedBatch:
    """Pack conversations into one row, in the order given.

    With `pad_to_multiple_of` > 1 the row is padded to a multiple of it (sequence parallelism
    needs T divisible by the number of ranks); the padding is its own segment and never scores.
    """
    if not sequences or any(len(s) == 0 for s in sequences):
        raise EngineError("nothing to pack: every conversation needs at least one token")
    lengths = [len(s) for s in sequences]
    n_tokens = sum(lengths)
    n_pad = -n_tokens % pad_to_multiple_of
    segment_lengths = lengths + ([n_pad] if n_pad else [])
    ids = [t for s in sequences for t in s] + [pad_token_id] * n_pad
    positions = [p for n in segment_lengths for p in range(n)]
    cu = [0]
    for n in segment_lengths:
        cu.append(cu[-1] + n)
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        cu_seqlens=torch.tensor(cu, dtype=torch.int32),
        reward_positions=torch.tensor(cu[1 : len(lengths) + 1], dtype=torch.long) - 1,
        max_seqlen=max(segment_lengths),
        n_pairs=n_pairs,
        n_tokens=n_tokens,
    )


def pack_pairs(pairs: Sequence[EncodedPair], pad_to_multiple_of: int = 1, pad_token_id: int = 0,
               share_prefix: bool = False) -> PackedBatch:
    """Pack pairs as chosen, rejected, chosen, rejected, ... into one row.

    With `share_prefix`, each pair's common token prefix is one segment that both replies continue
    (module docstring); `n_tokens` still counts both whole conversations, the tokens trained on.
    """
    if not share_prefix:
        return pack_sequences([s for pair in pairs for s in pair], pad_to_multiple_of, pad_token_id, n_pairs=len(pairs))
    if pad_to_multiple_of != 1:
        raise EngineError("shared-prefix packing has no padding (sequence parallelism packs pairs whole)")
    units = []
    for chosen, rejected in pairs:
        n = common_prefix_length([chosen, rejected])
        units.append((chosen[:n], [chosen[n:], rejected[n:]]))
    batch = pack_shared_prefixes(units)
    batch.n_pairs, batch.n_tokens = len(pairs), sum(len(c) + len(r) for c, r in pairs)
    return batch


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all the sequences share, leaving each at least one of its own."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


MIN_SHARED_PREFIX = 8  # tokens; below this, sharing a prefix saves less than it costs

Unit = tuple[list[int], list[tuple[int, list[int]]]]  # (shared prefix, [(conversation index, suffix ids)])


def prefix_units(groups: Iterable[Sequence[int]], encoded: Sequence[Sequence[int]], budget: int) -> list[Unit]:
    """Units of conversations that share a start, from groups of indices into `encoded`.

    A group's prefix is the longest common token prefix of its conversations (exact whatever the
    tokenizer does at the reply boundary), capped so every suffix keeps at least its reward token;
    under MIN_SHARED_PREFIX tokens its members go alone. A unit larger than the token budget is
    split into several that repeat the prefix.
    """
    units: list[Unit] = []
    for members in groups:
        shared = common_prefix_length([encoded[i] for i in members]) if len(members) > 1 else 0
        if shared < MIN_SHARED_PREFIX:
            units.extend(([], [(i, list(encoded[i]))]) for i in members)
            continue
        prefix = list(encoded[members[0]][:shared])
        chunk, size = [], shared
        for i in members:
            suffix = list(encoded[i][shared:])
            if chunk and size + len(suffix) > budget:
                units.append((prefix, chunk))
                chunk, size = [], shared
            chunk.append((i, suffix))
            size += len(suffix)
        units.append((prefix, chunk))
    return units


def groups_by_token_prefix(encoded: Sequence[Sequence[int]]) -> list[list[int]]:
    """Indices of conversations grouped by a common start, found by sorting their tokens.

    A conversation joins the group before it when it shares at least MIN_SHARED_PREFIX tokens with
    it and would not shorten what the group already shares.
    """
    groups: list[list[int]] = []
    shared = 0
    for i in sorted(range(len(encoded)), key=lambda i: encoded[i]):
        if groups:
            group = groups[-1]
            n = common_prefix_length([encoded[group[0]], encoded[i]])
            if n >= MIN_SHARED_PREFIX and (len(group) == 1 or n >= shared):
                shared = n if len(group) == 1 else shared
                group.append(i)
                continue
        groups.append([i])
    return groups


def packed_unit_batches(units: Sequence[Unit], budget: int, share: bool, pad_token_id: int = 0):
    """(conversation indices in row order, packed row) per micro-batch of at most `budget` tokens.

    With `share`, a unit's prefix is one segment its suffixes continue (`pack_shared_prefixes`);
    otherwise every conversation is packed whole.
    """
    sizes = [len(prefix) + sum(len(s) for _, s in members) if share else
             sum(len(prefix) + len(s) for _, s in members) for prefix, members in units]
    for group in group_by_token_budget(sizes, budget):
        chosen = [units[u] for u in group]
        order = [i for _, members in chosen for i, _ in members]
        if share:
            batch = pack_shared_prefixes([(prefix, [s for _, s in members]) for prefix, members in chosen])
        else:
            batch = pack_sequences([prefix + s for prefix, members in chosen for _, s in members],
                                   pad_token_id=pad_token_id)
        yield order, batch


def packed_pair_size(pair: EncodedPair, share_prefix: bool = False) -> int:
    """Tokens a pair takes in a packed row."""
    chosen, rejected = pair
    return len(chosen) + len(rejected) - (common_prefix_length(pair) if share_prefix else 0)


def pack_shared_prefixes(groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]]) -> PackedBatch:
    """Pack groups of conversations that share a token prefix, the prefix stored once per group.

    Each group is (prefix ids, [suffix ids, ...]); conversation j of a group is prefix + suffix j.
    Layout: prefix, suffix 1, ..., suffix N, next prefix, ... A suffix segment continues its
    prefix (positions go on from the prefix length, and attention sees the prefix's keys), so its
    hidden states equal those of the whole conversation run alone: causal attention means the
    prefix's own states never depend on what follows. `reward_positions` are the suffixes' last
    tokens, in order. Every suffix must be non-empty (it holds at least the reward token).
    """
    ids: list[int] = []
    positions: list[int] = []
    cu = [0]
    prefix_of: list[int] = []
    rewards: list[int] = []
    for prefix, suffixes in groups:
        if not suffixes or any(len(x) == 0 for x in suffixes):
            raise EngineError("every conversation needs a non-empty suffix after its shared prefix")
        prefix_segment = -1
        if prefix:
            ids.extend(prefix)
            positions.extend(range(len(prefix)))
            cu.append(cu[-1] + len(prefix))
            prefix_of.append(-1)
            prefix_segment = len(prefix_of) - 1
        for suffix in suffixes:
            ids.extend(suffix)
            positions.extend(range(len(prefix), len(prefix) + len(suffix)))
            cu.append(cu[-1] + len(suffix))
            prefix_of.append(prefix_segment)
            rewards.append(cu[-1] - 1)
    lengths = [b - a for a, b in zip(cu[:-1], cu[1:])]
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        cu_seqlens=torch.tensor(cu, dtype=torch.int32),
        reward_positions=torch.tensor(rewards, dtype=torch.long),
        max_seqlen=max(lengths),
        n_pairs=0,
        n_tokens=len(ids),
        segment_prefix=prefix_of,
    )


def pad_sequences(sequences: Sequence[Sequence[int]], pad_token_id: int, n_pairs: int = 0) -> PaddedBatch:
    """One conversation per row, right-padded to the longest."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise EngineError("nothing to pad: every conversation needs at least one token")
    lengths = [len(s) for s in sequences]
    width = max(lengths)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, s in enumerate(sequences):
        input_ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[row, : len(s)] = 1
    return PaddedBatch(input_ids, attention_mask, torch.tensor(lengths) - 1, n_pairs, sum(lengths))


def pad_pairs(pairs: Sequence[EncodedPair], pad_token_id: int) -> PaddedBatch:
    """Pairs as rows chosen, rejected, chosen, rejected, ..., right-padded."""
    return pad_sequences([s for pair in pairs for s in pair], pad_token_id, n_pairs=len(pairs))


def group_by_token_budget(sizes: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Split items of the given token sizes into groups of at most `max_tokens` (best-fit-decreasing).

    Returns lists of item indices; each group keeps its items in input order. An item larger
    than the budget is an EngineError.
    """
    if max_tokens < 1:
        raise EngineError(f"the token budget must be positive, got {max_tokens}")
    too_long = [i for i, n in enumerate(sizes) if n > max_tokens]
    if too_long:
        raise EngineError(
            f"{len(too_long)} item(s) need more than {max_tokens} tokens (the first, item {too_long[0]}, needs "
            f"{sizes[too_long[0]]}); raise max_packed_length or lower max_length"
        )
    groups: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # (free tokens, group index), kept sorted
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        slot = bisect.bisect_left(rooms, (sizes[i], -1))  # the fullest group that still fits the item
        if slot < len(rooms):
            room, g = rooms.pop(slot)
        else:
            room, g = max_tokens, len(groups)
            groups.append([])
        groups[g].append(i)
        bisect.insort(rooms, (room - sizes[i], g))
    return [sorted(g) for g in groups]


def group_pairs(pairs: Sequence[EncodedPair], max_packed_length: int, share_prefix: bool = False) -> list[list[int]]:
    """Indices of pairs per micro-batch: each group packs into at most `max_packed_length` tokens."""
    return group_by_token_budget([packed_pair_size(p, share_prefix) for p in pairs], max_packed_length)
