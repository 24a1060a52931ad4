"""Varlen attention for packed sequences: several conversations in one row, none seeing another.

A packed row holds conversations back to back; `cu_seqlens` (int32, leading 0) marks where each
one starts. `varlen_attention` runs causal attention once per segment, so no token attends across a
boundary and no (T, T) mask is ever built. It is registered with transformers as the attention
implementation "packed_sdpa"; the model then receives the boundaries as the `cu_seq_lens_q` /
`cu_seq_lens_k` keyword arguments of its forward (the names transformers' flash-attention path
uses too), so the same packed batch drives either kernel:

- CPU, or CUDA without flash-attn: "packed_sdpa" (this file; tested here).
- CUDA with flash-attn installed: transformers' own "flash_attention_2", which calls
  `flash_attn_varlen_func` with the same kwargs. UNTESTED in this project (no GPU here).

Sequence parallelism (Ulysses) is meant to wrap `varlen_attention`: all-to-all from
sequence-sharded to head-sharded q/k/v, call it on the full-length (T, H/P, D) tensors, all-to-all
back, and register that as its own attention implementation.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from engine.errors import EngineError

PACKED_SDPA = "packed_sdpa"
FLASH_ATTENTION_2 = "flash_attention_2"


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor | list[int],
    scale: float | None = None,
    dropout: float = 0.0,
    segment_prefix: list[int] | None = None,
) -> torch.Tensor:
    """Causal attention within each segment of a packed sequence.

    q: (T, H, D); k, v: (T, Hkv, D) with H a multiple of Hkv (grouped-query attention);
    cu_seqlens: segment boundaries [0, l0, l0+l1, ..., T]. Returns (T, H, D).
    segment_prefix: optionally, for each segment the index of an earlier segment it continues
    (-1 for none): its queries then also see all of that prefix's keys, as if the prefix were
    written in front of it. Scoring uses this to run a prompt shared by N replies once.
    """
    bounds = cu_seqlens.tolist() if isinstance(cu_seqlens, torch.Tensor) else list(cu_seqlens)
    lengths = [end - start for start, end in zip(bounds[:-1], bounds[1:])]
    # split, not slice: the backward of a split writes each segment's gradient once (one cat), where
    # a slice's backward builds a zero tensor the size of the whole row per segment
    qs, ks, vs = (x.transpose(0, 1).split(lengths, dim=1) for x in (q, k, v))  # (H, L, D) per segment
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    outs = []
    for s, length in enumerate(lengths):
        if length == 0:
            continue
        prefix = segment_prefix[s] if segment_prefix is not None else -1
        keys, values = ks[s], vs[s]
        if prefix >= 0:
            keys, values = torch.cat([ks[prefix], keys], dim=1), torch.cat([vs[prefix], values], dim=1)
        outs.append(_causal_attention(qs[s], keys, values, scale, dropout))  # (H, L, D)
    return torch.cat(outs, dim=1).transpose(0, 1)  # (T, H, D)


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout: float) -> torch.Tensor:
    """q: (H, L, D); k, v: (Hkv, K, D), K >= L. The queries are the last L positions of the keys:
    each sees every key up to its own position.

    Written out rather than through SDPA: on CPU, SDPA with grouped-query heads or a mask takes its
    math path, which upcasts bf16 to fp32 and costs about twice as much (46% of scoring time
    before). Here grouped heads broadcast without copying keys, scores and softmax are fp32, and
    under bf16 autocast both matmuls run in bf16 with fp32 accumulation, as flash attention does.
    """
    heads, length, dim = q.shape
    groups, keys = k.shape[0], k.shape[1]
    q = (q * scale).reshape(groups, heads // groups, length, dim)  # query heads sharing a key head
    scores = torch.matmul(q, k.unsqueeze(1).transpose(-1, -2)).float()  # (Hkv, G, L, K)
    hidden = _future_mask(length, keys, q.device)
    probs = torch.softmax(scores.masked_fill_(hidden, float("-inf")), dim=-1)
    if dropout:
        probs = F.dropout(probs, p=dropout)
    out = torch.matmul(probs.to(v.dtype), v.unsqueeze(1))  # (Hkv, G, L, D)
    return out.reshape(heads, length, dim)


def _future_mask(length: int, keys: int, device: torch.device) -> torch.Tensor:
    """True where a query (the last `length` of `keys` positions) would see a later key.

    Every layer of a forward pass asks for the same masks, so masks of up to 1 MB are kept
    (at most 256 MB); a larger one costs little beside the attention it masks.
    """
    if length * keys > _CACHED_MASK_ELEMENTS:
        return _build_future_mask(length, keys, device)
    return _cached_future_mask(length, keys, device)


def _build_future_mask(length: int, keys: int, device: torch.device) -> torch.Tensor:
    return torch.ones(length, keys, dtype=torch.bool, device=device).triu(keys - length + 1)


_CACHED_MASK_ELEMENTS = 1 << 20
_cached_future_mask = functools.lru_cache(maxsize=256)(_build_future_mask)


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The transformers attention function behind "packed_sdpa".

    query: (B, H, T, D), key/value: (B, Hkv, T, D); returns (B, T, H, D) like every transformers
    attention function. With `cu_seq_lens_q` the batch must be one packed row. Without it each row
    is one conversation and attention is plain causal over the row: this is exact for
    right-padded rows, whose real tokens never look at the padding after them (transformers builds
    no mask for a custom implementation, so left padding would NOT be handled).
    """
    _refuse_unsupported(kwargs, max_length=kwargs.get("max_length_q") or query.shape[2])
    if cu_seq_lens_q is not None:
        if query.shape[0] != 1:
            raise ValueError(f"packed attention expects one packed row, got a batch of {query.shape[0]}")
        if cu_seq_lens_k is not None and not torch.equal(cu_seq_lens_q, cu_seq_lens_k):
            raise ValueError("packed attention needs the same boundaries for queries and keys (no KV cache)")
        out = varlen_attention(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
                               cu_seq_lens_q, scale=scaling, dropout=dropout,
                               segment_prefix=kwargs.get("segment_prefix"))  # (T, H, D)
        return out.unsqueeze(0), None
    if attention_mask is not None:
        raise ValueError("packed_sdpa got an attention mask; pad on the right and pass no mask, or pass cu_seq_lens_q")
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=query.shape[2] > 1,
                                         scale=scaling, enable_gqa=query.shape[1] != key.shape[1])  # (B, H, T, D)
    return out.transpose(1, 2).contiguous(), None


def _refuse_unsupported(kwargs: dict, max_length: int) -> None:
    # Rather than silently compute something else: these backbones need a kernel that has the feature.
    if kwargs.get("softcap") is not None:
        raise EngineError("packed_sdpa has no attention logit soft-capping (Gemma-2 style backbones)")
    window = kwargs.get("sliding_window")
    if window is not None and int(max_length) > window:
        raise EngineError(f"a conversation of {int(max_length)} tokens exceeds the backbone's sliding window ({window}); "
                          "packed_sdpa has full causal attention only: lower max_length")


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)


def flash_attn_available() -> bool:
    """Whether flash-attn's varlen kernel can be used (installed, on CUDA)."""
    return importlib.util.find_spec("flash_attn") is not None


def select_attention_implementation(device: torch.device | str) -> str:
    """"flash_attention_2" on CUDA when flash-attn is installed, otherwise "packed_sdpa"."""
    if torch.device(device).type == "cuda" and flash_attn_available():
        return FLASH_ATTENTION_2
    return PACKED_SDPA
