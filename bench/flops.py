"""How much of the machine a training run uses: model FLOPs per token against a matmul peak measured here.

Model FLOPs count the useful work only (real tokens, no padding, no recomputation), the way MFU is
usually reported: 2 FLOPs per multiply-accumulate in every linear layer of the decoder, plus the two
attention matmuls over the keys a causal token sees in its own conversation. A backward pass that
skips the frozen weights' gradients (LoRA, a frozen backbone) costs one forward more; full training
costs two. The peak is a large bf16 (or fp32) matmul timed in the same process that reports the ratio,
so the share means "of what this CPU's matmul reaches now", not of a datasheet figure.
"""

from __future__ import annotations

import time


def decoder_forward_flops_per_token(config, mean_context: float) -> float:
    """Forward FLOPs per token of a Llama-style decoder (no LM head) for a given mean causal context."""
    h, layers = config.hidden_size, config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    linear = h * heads * head_dim * 2 + h * kv_heads * head_dim * 2 + 3 * h * config.intermediate_size
    attention = 2 * heads * head_dim * mean_context  # QK^T and PV, per token per layer
    return 2.0 * layers * (linear + attention)


# forward + backward, in forwards: the backward of a frozen weight computes only the input gradient
PASSES = {"forward": 1.0, "lora": 2.0, "frozen": 2.0, "full": 3.0}


def causal_mean_context(lengths: list[int]) -> float:
    """The mean number of keys a token attends to, over causal conversations of these lengths."""
    tokens = sum(lengths)
    return sum(n * (n + 1) / 2 for n in lengths) / max(1, tokens)


def matmul_peak_gflops(dtype_name: str = "bf16", size: int = 2048, seconds: float = 3.0) -> float:
    """GFLOP/s of a square matmul in this process (the best of repeated timings over about `seconds`)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: thread pool, kernels
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9
