"""The model-FLOP count that `bench/vs_trl.py` reports as a share of the matmul peak."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from flops import causal_mean_context, decoder_forward_flops_per_token  # noqa: E402


def test_causal_mean_context_counts_the_keys_each_token_sees():
    assert causal_mean_context([1]) == 1
    assert causal_mean_context([3]) == 2  # tokens see 1, 2 and 3 keys
    assert causal_mean_context([1, 3]) == pytest.approx((1 + 1 + 2 + 3) / 4)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_forward_flops_match_torchs_own_count(kv_heads):
    """torch's FlopCounterMode over a real decoder forward of one token (a context of one key) agrees."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaModel

    from tests.tiny import tiny_llama_config

    config = tiny_llama_config(64, num_key_value_heads=kv_heads, intermediate_size=96)
    model = LlamaModel(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.tensor([[5]]), use_cache=False)
    # rotary embeddings add one tiny matmul (head_dim FLOPs) that the formula leaves out
    assert decoder_forward_flops_per_token(config, 1.0) == pytest.approx(counter.get_total_flops(), rel=0.01)
