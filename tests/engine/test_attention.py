"""Varlen attention against a dense block-diagonal causal mask (two implementations must agree)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.attention import (flash_attn_available, packed_sdpa_attention, select_attention_implementation,
                              varlen_attention)
from engine.errors import EngineError


def dense_block_causal(q, k, v, cu_seqlens):
    """Reference: one SDPA call over the whole row with a (T, T) block-diagonal causal mask."""
    T = q.shape[0]
    segment = torch.repeat_interleave(torch.arange(len(cu_seqlens) - 1), torch.diff(cu_seqlens))  # (T,)
    mask = (segment[:, None] == segment[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask)
    return out.transpose(0, 1)  # (T, H, D)


def test_varlen_attention_matches_dense_mask_with_gqa():
    torch.manual_seed(0)
    cu = torch.tensor([0, 5, 6, 13, 20], dtype=torch.int32)
    q = torch.randn(20, 4, 8, requires_grad=True)  # (T, H, D)
    k = torch.randn(20, 2, 8, requires_grad=True)  # (T, Hkv, D)
    v = torch.randn(20, 2, 8, requires_grad=True)
    out = varlen_attention(q, k, v, cu)
    ref = dense_block_causal(q, k, v, cu)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_segments_do_not_see_each_other():
    torch.manual_seed(1)
    q, k, v = torch.randn(9, 2, 4), torch.randn(9, 2, 4), torch.randn(9, 2, 4)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    before = varlen_attention(q, k, v, cu)
    k2, v2 = k.clone(), v.clone()
    k2[:4] += 5.0  # change only the first segment's keys and values
    v2[:4] -= 3.0
    after = varlen_attention(q, k2, v2, cu)
    torch.testing.assert_close(after[4:], before[4:])
    assert not torch.allclose(after[:4], before[:4])


def test_transformers_adapter_shapes_and_checks():
    torch.manual_seed(2)
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)  # (B, H, T, D)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    out, weights = packed_sdpa_attention(None, q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    assert out.shape == (1, 6, 4, 8) and weights is None  # (B, T, H, D)
    ref = varlen_attention(q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1), cu)
    torch.testing.assert_close(out[0], ref)
    # without boundaries: plain causal attention over each row
    plain, _ = packed_sdpa_attention(None, q, k, v, None)
    torch.testing.assert_close(plain[0], varlen_attention(q[0].transpose(0, 1), k[0].transpose(0, 1),
                                                          v[0].transpose(0, 1), [0, 6]))
    with pytest.raises(ValueError, match="one packed row"):
        packed_sdpa_attention(None, q.expand(2, -1, -1, -1), k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1),
                              None, cu_seq_lens_q=cu, cu_seq_lens_k=cu)


def test_features_it_lacks_are_refused_not_ignored():
    q = k = v = torch.randn(1, 2, 6, 4)
    cu = torch.tensor([0, 6], dtype=torch.int32)
    with pytest.raises(EngineError, match="sliding window"):
        packed_sdpa_attention(None, q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=6, sliding_window=4)
    with pytest.raises(EngineError, match="soft-capping"):
        packed_sdpa_attention(None, q, k, v, None, softcap=30.0)
    out, _ = packed_sdpa_attention(None, q, k, v, None, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=6,
                                   sliding_window=8)  # a window longer than every segment changes nothing
    assert out.shape == (1, 6, 2, 4)


def test_select_attention_implementation():
    assert select_attention_implementation("cpu") == "packed_sdpa"
    assert select_attention_implementation("cuda") == ("flash_attention_2" if flash_attn_available() else "packed_sdpa")
