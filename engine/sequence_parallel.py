"""Sequence parallelism (DeepSpeed-Ulysses style): one packed row split across the ranks of a group.

    layout = parallel_layout(ctx, sp_size)         # world = dp_size x sp_size, SP groups = consecutive ranks
    scorer = SequenceParallelScorer(rm.decoder, rm.value_head, layout.sp_group)
    scores = scorer(pack_pairs(pairs, pad_to_multiple_of=sp_size))   # (N,), the same on every SP rank

Each of the P ranks of an SP group embeds and runs every layer on its contiguous 1/P of the
packed row (input ids and the matching slice of the global position ids, so RoPE is unchanged).
Around attention, an all-to-all trades sequence shards for head shards:

    q/k/v (1, H, T/P, D) on rank r  --all-to-all-->  (T, H/P, D): every token, heads r*H/P .. (r+1)*H/P
    varlen_attention over the full row's cu_seqlens (no token crosses a conversation boundary)
    out (T, H/P, D)                 --all-to-all-->  (1, T/P, H, D): our tokens, every head again

Both all-to-alls use `all_to_all_single_autograd`, whose backward is the reverse all-to-all, so
gradients reach the rank that computed each q/k/v. Heads (and key/value heads, which are repeated
when there are too few) must divide by P. The row is padded to a multiple of P with a dummy
segment that never scores (`pack_pairs(..., pad_to_multiple_of=P)`).

Scores: each reward token lives on exactly one rank, which applies the value head to it; a sum
over the group (zeros elsewhere) gives every rank the full score vector, so every rank computes
the same loss. The sum's backward is the identity: each rank already holds dL/dscores (its own
copy of the same loss), and its own scores appear once in the sum, so passing the gradient on
unchanged counts every contribution once. The gradient of the whole row is then the sum of the
SP ranks' parameter gradients (engine.training explains how DDP turns that into the step mean).

The attention runs `engine.attention.varlen_attention` (SDPA per segment) on CPU and CUDA alike;
flash-attn is not used under SP. Tested on CPU with gloo; the CUDA/nccl path is untested.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed._functional_collectives import all_to_all_single_autograd
from transformers import AttentionInterface

from engine.attention import _refuse_unsupported, packed_sdpa_attention, varlen_attention
from engine.distributed import DistContext
from engine.errors import EngineError
from engine.packing import PackedBatch

ULYSSES_PACKED_SDPA = "ulysses_packed_sdpa"


@dataclass(frozen=True)
class ParallelLayout:
    """Where this rank sits in world = dp_size x sp_size (SP groups are consecutive ranks)."""

    dp_rank: int
    dp_size: int
    sp_rank: int
    sp_size: int
    sp_group: dist.ProcessGroup | None  # None when sp_size == 1


def parallel_layout(ctx: DistContext, sp_size: int) -> ParallelLayout:
    """Split the world into data-parallel replicas of `sp_size` consecutive ranks each (collective)."""
    if sp_size < 1 or ctx.world_size % sp_size:
        raise EngineError(f"sp_size={sp_size} must divide the number of processes ({ctx.world_size}); "
                          f"launch with e.g. torchrun --nproc_per_node={max(sp_size, 1)} or lower --sp-size")
    if sp_size == 1:
        return ParallelLayout(ctx.rank, ctx.world_size, 0, 1, None)
    dp_rank, sp_rank = divmod(ctx.rank, sp_size)
    mine = None
    for replica in range(ctx.world_size // sp_size):  # every rank must create every group, in order
        group = dist.new_group(list(range(replica * sp_size, (replica + 1) * sp_size)))
        if replica == dp_rank:
            mine = group
    return ParallelLayout(dp_rank, ctx.world_size // sp_size, sp_rank, sp_size, mine)


def check_heads(config, sp_size: int) -> None:
    """Refuse a backbone whose attention heads cannot be split over `sp_size` ranks."""
    heads = config.num_attention_heads
    if heads % sp_size:
        raise EngineError(f"sequence parallelism splits attention heads over the SP group: {heads} heads do not "
                          f"divide by sp_size={sp_size}; pick an sp_size that divides {heads}")


def _seq_to_heads(x: torch.Tensor, group) -> torch.Tensor:
    """(H, T/P, D), this rank's tokens -> (T, H/P, D), every token of this rank's heads."""
    p = dist.get_world_size(group)
    h, t, d = x.shape
    x = x.reshape(p, h // p, t, d).contiguous()  # chunk j goes to rank j
    x = all_to_all_single_autograd(x, None, None, group)  # (P, H/P, T/P, D): chunk i came from rank i
    return x.permute(1, 0, 2, 3).reshape(h // p, p * t, d).transpose(0, 1)


def _heads_to_seq(x: torch.Tensor, group) -> torch.Tensor:
    """(T, H/P, D) -> (T/P, H, D): the inverse of `_seq_to_heads`."""
    p = dist.get_world_size(group)
    total, h, d = x.shape
    x = x.reshape(p, total // p, h, d).contiguous()  # token chunk i goes back to rank i
    x = all_to_all_single_autograd(x, None, None, group)  # (P, T/P, H/P, D): chunk j holds heads of rank j
    return x.permute(1, 0, 2, 3).reshape(total // p, p * h, d)


def _repeat_kv(x: torch.Tensor, heads: int, p: int) -> torch.Tensor:
    """(Hkv, t, D) -> (Hkv * r, t, D) with the smallest r that makes the count divide by P.

    Repeating each kv head r times in place keeps grouped-query attention's mapping (query
    head h reads kv head h // (H / Hkv)) intact after the split.
    """
    kv = x.shape[0]
    r = next(r for r in range(1, heads // kv + 1) if (heads // kv) % r == 0 and (kv * r) % p == 0)
    return x if r == 1 else x.repeat_interleave(r, dim=0)


def ulysses_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      cu_seq_lens_q: torch.Tensor | None = None, cu_seq_lens_k: torch.Tensor | None = None,
                      sp_group=None, **kwargs) -> tuple[torch.Tensor, None]:
    """The transformers attention function behind "ulysses_packed_sdpa".

    query: (1, H, T/P, D), key/value: (1, Hkv, T/P, D), this rank's shard of one packed row;
    `cu_seq_lens_q` are the full row's boundaries. Returns (1, T/P, H, D). Without `sp_group`
    (scoring or evaluation on one rank) it is exactly "packed_sdpa".
    """
    if sp_group is None:
        return packed_sdpa_attention(module, query, key, value, attention_mask, dropout, scaling,
                                     cu_seq_lens_q, cu_seq_lens_k, **kwargs)
    _refuse_unsupported(kwargs, max_length=kwargs.get("max_length_q") or query.shape[2])
    if cu_seq_lens_q is None or query.shape[0] != 1:
        raise EngineError("sequence-parallel attention needs one packed row and its cu_seq_lens_q")
    p, heads = dist.get_world_size(sp_group), query.shape[1]
    if heads % p:
        raise EngineError(f"{heads} attention heads do not divide by sp_size={p}")
    q = _seq_to_heads(query[0], sp_group)  # (T, H/P, D)
    k = _seq_to_heads(_repeat_kv(key[0], heads, p), sp_group)  # (T, Hkv'/P, D)
    v = _seq_to_heads(_repeat_kv(value[0], heads, p), sp_group)
    out = varlen_attention(q, k, v, cu_seq_lens_q, scale=scaling, dropout=dropout)  # (T, H/P, D)
    return _heads_to_seq(out, sp_group).unsqueeze(0), None  # (1, T/P, H, D)


AttentionInterface.register(ULYSSES_PACKED_SDPA, ulysses_attention)


class _SumOverGroup(torch.autograd.Function):
    """Forward: sum over the SP group. Backward: identity (see the module docstring for why)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class SequenceParallelScorer(torch.nn.Module):
    """Decoder + value head over one packed row split across an SP group; scores (N,) on every rank.

    Shares its parameters with the reward model (like `BatchScorer`), so DDP or FSDP can wrap it.
    Switches the decoder to "ulysses_packed_sdpa" for good (gradient checkpointing re-runs the
    forward inside backward, so the switch cannot be undone after each forward); that function
    without an SP group is plain "packed_sdpa". `own_attention()` restores the decoder's own
    implementation for evaluation between steps.
    """

    def __init__(self, decoder: torch.nn.Module, value_head: torch.nn.Module, group):
        super().__init__()
        self.decoder = decoder
        self.value_head = value_head
        self.group = group
        check_heads(decoder.config, dist.get_world_size(group))
        self.own_implementation = decoder.config._attn_implementation
        decoder.set_attn_implementation(ULYSSES_PACKED_SDPA)

    @contextlib.contextmanager
    def own_attention(self):
        self.decoder.set_attn_implementation(self.own_implementation)
        try:
            yield
        finally:
            self.decoder.set_attn_implementation(ULYSSES_PACKED_SDPA)

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        p, rank = dist.get_world_size(self.group), dist.get_rank(self.group)
        total = batch.input_ids.shape[1]
        if total % p:
            raise EngineError(f"a packed row of {total} tokens does not split over {p} ranks: "
                              f"pack with pad_to_multiple_of={p}")
        shard = slice(rank * (total // p), (rank + 1) * (total // p))
        hidden = self.decoder(
            input_ids=batch.input_ids[:, shard],
            position_ids=batch.position_ids[:, shard],  # the global positions: RoPE as without SP
            use_cache=False,
            cu_seq_lens_q=batch.cu_seqlens,
            cu_seq_lens_k=batch.cu_seqlens,
            max_length_q=batch.max_seqlen,
            max_length_k=batch.max_seqlen,
            sp_group=self.group,
        ).last_hidden_state[0]  # (T/P, hidden)
        mine = (batch.reward_positions >= shard.start) & (batch.reward_positions < shard.stop)  # (N,)
        head_dtype = next(self.value_head.parameters()).dtype
        # the value head runs even on no reward token, so every rank's graph uses every parameter (DDP)
        local = self.value_head(hidden[batch.reward_positions[mine] - shard.start].to(head_dtype)).squeeze(-1)
        scores = torch.zeros(mine.shape[0], dtype=local.dtype, device=local.device).masked_scatter(mine, local)
        return _SumOverGroup.apply(scores, self.group)  # (N,)
