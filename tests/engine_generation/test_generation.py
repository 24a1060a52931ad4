"""The hand-written decode loop: requested items, finish reasons, per-sample seeds, left padding."""

import contextlib
import importlib.util

import pytest
import torch

from engine.backbone import model_fingerprint
from engine.data import SamplingParams
from engine.errors import EngineError
from engine.generation import (
    NUCLEUS_CANDIDATES,
    Policy,
    VLLMPolicy,
    encode_prompt,
    load_policy,
    pick_next_tokens,
    default_seed_key,
    sample_seed,
)
from tests.tiny import STRICT_CHAT_TEMPLATE, make_tiny_model_dir

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colours, please."}],
    [{"role": "user", "content": "A much longer question about the weather in Paris in the spring time? " * 3}],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # Weights 10x the default scale: with the default, greedy decoding repeats one token whatever
    # the context, and a wrong position or padding mask would go unnoticed.
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"), initializer_range=0.2)


@pytest.fixture
def policy(model_dir):
    return Policy.load(model_dir)


@contextlib.contextmanager
def eos_bias(policy, value):
    """Add `value` to the EOS logit at every step (-inf: never stop, large: stop at once)."""
    bias = torch.zeros(policy.model.config.vocab_size)
    bias[policy.tokenizer.eos_token_id] = value
    handle = policy.model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    try:
        yield
    finally:
        handle.remove()


def run(policy, prompts=PROMPTS, n=2, params=None, **kwargs):
    params = params or SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)
    samples = [s for chunk in policy.generate(prompts, n, params, **kwargs) for s in chunk]
    return {(s.prompt_index, s.sample_index): s for s in samples}, samples


def test_load_exposes_path_and_fingerprint(policy, model_dir):
    assert policy.path == model_dir
    assert policy.fingerprint == model_fingerprint(model_dir)
    assert policy.stop_ids == [policy.tokenizer.eos_token_id]


def test_generates_exactly_the_requested_items(policy):
    done = []
    chunks = list(policy.generate(PROMPTS, 4, SamplingParams(max_new_tokens=4), batch_size=5, progress=done.append))
    pairs = [(s.prompt_index, s.sample_index) for chunk in chunks for s in chunk]
    assert sorted(pairs) == [(p, s) for p in range(3) for s in range(4)]
    assert [len(c) for c in chunks] == [5, 5, 2] and done == [5, 5, 2]

    wanted = [(2, 3), (0, 1), (2, 0)]  # e.g. what a resumed run still lacks
    by_pair, samples = run(policy, n=4, only=wanted + [(0, 1)])  # a repeated pair is made once
    assert sorted(by_pair) == sorted(wanted) and len(samples) == 3


def test_length_finish_when_eos_never_wins(policy):
    with eos_bias(policy, float("-inf")):
        _, samples = run(policy, params=SamplingParams(temperature=1.0, max_new_tokens=3))
    assert {s.finish_reason for s in samples} == {"length"}
    assert all(s.n_tokens == 3 == len(s.token_ids) for s in samples)
    assert all(s.time_s > 0 for s in samples)


def test_stop_finish_when_eos_always_wins(policy):
    with eos_bias(policy, 1e4):
        _, samples = run(policy)
    assert all(s.finish_reason == "stop" and s.n_tokens == 0 and s.text == "" for s in samples)


def test_mixed_finishes_in_one_batch(policy):
    # EOS made likely enough that some rows stop early and leave the batch while others run on.
    with eos_bias(policy, 3.0):
        _, samples = run(policy, n=6, params=SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=15))
    stops = [s for s in samples if s.finish_reason == "stop"]
    lengths = [s for s in samples if s.finish_reason == "length"]
    assert stops and lengths
    assert all(s.n_tokens < 15 for s in stops) and all(s.n_tokens == 15 for s in lengths)
    eos = policy.tokenizer.eos_token_id
    for s in samples:
        assert eos not in s.token_ids and s.n_tokens == len(s.token_ids)
        assert s.text == policy.tokenizer.decode(s.token_ids, skip_special_tokens=True)


def test_seeds_fix_the_samples(policy):
    first, _ = run(policy, n=3)
    again, _ = run(policy, n=3)
    assert {k: s.token_ids for k, s in first.items()} == {k: s.token_ids for k, s in again.items()}
    assert len({s.seed for s in first.values()}) == len(first)  # every (prompt, sample) has its own seed
    assert len({tuple(s.token_ids) for s in first.values()}) > len(first) // 2
    other, _ = run(policy, n=3, params=SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=8))
    assert sum(other[k].token_ids != first[k].token_ids for k in first) >= len(first) - 1
    key = default_seed_key(PROMPTS[1])
    assert first[(1, 2)].seed == sample_seed(7, key, 2)
    assert len({sample_seed(7, key, 2), sample_seed(8, key, 2), sample_seed(7, key, 1),
                sample_seed(7, default_seed_key(PROMPTS[0]), 2)}) == 4
    keyed, _ = run(policy, n=3, prompt_keys=["a", "b", "c"])
    assert keyed[(1, 2)].seed == sample_seed(7, "b", 2)


def test_a_sample_does_not_depend_on_its_batch(policy):
    # Rows finish at different steps, so the batch shrinks around the rows that continue.
    params = SamplingParams(temperature=1.0, top_p=0.8, max_new_tokens=15, seed=3)
    with eos_bias(policy, 3.0):
        batched, _ = run(policy, n=4, params=params, batch_size=12)
        regrouped, _ = run(policy, n=4, params=params, batch_size=5)
        for pair in [(0, 0), (1, 3), (2, 1), (2, 2)]:
            alone, _ = run(policy, n=4, params=params, only=[pair], batch_size=1)
            assert alone[pair].token_ids == batched[pair].token_ids
    assert {k: s.token_ids for k, s in regrouped.items()} == {k: s.token_ids for k, s in batched.items()}
    assert len({s.finish_reason for s in batched.values()}) == 2


def test_left_padding_matches_alone_and_hf_generate(policy):
    greedy = SamplingParams(temperature=0, max_new_tokens=10)
    with eos_bias(policy, float("-inf")):
        batched, _ = run(policy, n=1, params=greedy)
        for p, messages in enumerate(PROMPTS):
            alone, _ = run(policy, prompts=[messages], n=1, params=greedy)
            assert alone[(0, 0)].token_ids == batched[(p, 0)].token_ids
            ids = torch.tensor([encode_prompt(policy.tokenizer, messages)])
            reference = policy.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                              do_sample=False, pad_token_id=policy.pad_id)
            assert reference[0, ids.shape[1]:].tolist() == batched[(p, 0)].token_ids


def test_sampler_follows_the_nucleus_distribution():
    torch.manual_seed(0)
    logits = torch.randn(1, 50) * 2
    draws = 20000
    uniforms = torch.rand(draws)
    tokens = pick_next_tokens(logits.expand(draws, -1), 0.7, 0.8, uniforms)
    probs = torch.softmax(logits[0] / 0.7, -1)
    sorted_probs, order = probs.sort(descending=True)
    n_keep = int(((sorted_probs.cumsum(0) - sorted_probs) < 0.8).sum())
    expected = torch.zeros(50)
    expected[order[:n_keep]] = sorted_probs[:n_keep] / sorted_probs[:n_keep].sum()
    observed = torch.bincount(tokens, minlength=50).float() / draws
    assert set(tokens.tolist()) <= set(order[:n_keep].tolist())
    assert (observed - expected).abs().max() < 0.015
    assert pick_next_tokens(logits, 1.0, 1e-6, torch.tensor([0.99])).item() == logits.argmax().item()
    assert pick_next_tokens(logits, 0.0, 0.5, torch.tensor([0.5])).item() == logits.argmax().item()


def test_wide_nucleus_falls_back_to_a_full_sort(monkeypatch):
    # Flat logits put the nucleus far beyond the candidate shortlist; results must not change.
    logits = torch.randn(64, NUCLEUS_CANDIDATES * 4) * 0.1
    logits[:32] *= 100  # sharp rows: nucleus inside the shortlist
    uniforms = torch.rand(64)
    fast = pick_next_tokens(logits, 1.0, 0.95, uniforms)
    monkeypatch.setattr("engine.generation.NUCLEUS_CANDIDATES", logits.shape[-1])
    assert torch.equal(fast, pick_next_tokens(logits, 1.0, 0.95, uniforms))


@pytest.mark.parametrize("params, message", [
    (SamplingParams(temperature=-1), "temperature"),
    (SamplingParams(top_p=0), "top_p"),
    (SamplingParams(max_new_tokens=0), "max_new_tokens"),
    (SamplingParams(max_new_tokens=5000), "exceeds the model's 2048 positions"),
])
def test_bad_params_raise_engine_error(policy, params, message):
    with pytest.raises(EngineError, match=message):
        list(policy.generate(PROMPTS, 1, params))


def test_bad_requests_raise_engine_error(policy, tmp_path):
    with pytest.raises(EngineError, match="out of range"):
        list(policy.generate(PROMPTS, 2, SamplingParams(), only=[(0, 2)]))
    with pytest.raises(EngineError, match="one key per prompt"):
        list(policy.generate(PROMPTS, 2, SamplingParams(), prompt_keys=["a"]))
    strict = Policy.load(make_tiny_model_dir(tmp_path / "strict", chat_template=STRICT_CHAT_TEMPLATE))
    two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(EngineError, match="prompt 1: the model's chat template rejected it"):
        list(strict.generate([PROMPTS[0], two_users], 1, SamplingParams()))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_says_what_is_missing(model_dir):
    with pytest.raises(EngineError, match="needs vllm"):
        VLLMPolicy(model_dir)
    with pytest.raises(EngineError, match="needs vllm"):
        load_policy(model_dir, backend="vllm")
    with pytest.raises(EngineError, match="unknown generation backend"):
        load_policy(model_dir, backend="tgi")
    assert isinstance(load_policy(model_dir), Policy)


@pytest.mark.slow
def test_smollm2_writes_coherent_replies():
    policy = Policy.load("smollm2")
    prompts = [[{"role": "user", "content": "What is the capital of France?"}],
               [{"role": "user", "content": "Name the largest planet in the solar system."}]]
    greedy, _ = run(policy, prompts=prompts, n=1, params=SamplingParams(temperature=0, max_new_tokens=32))
    assert "Paris" in greedy[(0, 0)].text and greedy[(0, 0)].finish_reason == "stop"
    assert "planet" in greedy[(1, 0)].text.lower()  # on topic (the 135M model is not always right)
    ids = torch.tensor([encode_prompt(policy.tokenizer, prompts[1])])
    reference = policy.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False)
    assert reference[0, ids.shape[1]:].tolist() == greedy[(1, 0)].token_ids
    sampled, _ = run(policy, prompts=prompts, n=2, params=SamplingParams(max_new_tokens=24, seed=1))
    assert len(sampled) == 4 and all(len(s.text.split()) >= 3 for s in sampled.values())
