"""Batched vs one-at-a-time Best-of-N generation with SmolLM2 on CPU; prints JSON.

Both ways make the same (prompt, sample_index) samples with the same per-sample seeds, so the
run also reports how many came out token-identical. The batched run is timed before and after
the one-at-a-time run and averaged, so load from other processes hits both sides alike (the load
average is printed too). HF `model.generate` on the same batch is measured as a reference for
the hand-written decode loop.

    python bench/generation.py            # ~3-4 minutes on 2 cores
    python bench/generation.py --n 4 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import SamplingParams  # noqa: E402
from engine.generation import Policy, encode_prompt  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Give me two tips for sleeping better.",
    "Write a haiku about the sea.",
    "Explain what a list is in Python.",
]


def timed_generate(policy, prompts, n, params, batch_size):
    started = time.perf_counter()
    samples = [s for chunk in policy.generate(prompts, n, params, batch_size=batch_size) for s in chunk]
    return samples, time.perf_counter() - started


def hf_generate(policy, prompts, n, params):
    """Reference: transformers' own sampler on one left-padded batch of all prompts x n."""
    tokenizer = policy.tokenizer
    tokenizer.padding_side = "left"
    texts = [tokenizer.decode(encode_prompt(tokenizer, p)) for p in prompts for _ in range(n)]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(params.seed)
    started = time.perf_counter()
    with torch.inference_mode():
        out = policy.model.generate(**batch, do_sample=True, temperature=params.temperature, top_p=params.top_p,
                                    top_k=0, max_new_tokens=params.max_new_tokens, pad_token_id=policy.pad_id)
    elapsed = time.perf_counter() - started
    new = out[:, batch["input_ids"].shape[1]:]
    stop = torch.isin(new, torch.tensor(policy.stop_ids))
    # Tokens before the first EOS in each row (rows that stopped keep emitting padding after it).
    n_tokens = int(torch.where(stop.any(1), stop.int().argmax(1), torch.tensor(new.shape[1])).sum())
    return n_tokens, elapsed


def summary(samples, seconds):
    tokens = sum(s.n_tokens for s in samples)
    return {"samples": len(samples), "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=None, help="rows per forward pass (default: all samples)")
    parser.add_argument("--skip-hf", action="store_true", help="do not measure HF generate")
    args = parser.parse_args()

    policy = Policy.load("smollm2")
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    timed_generate(policy, prompts[:1], 2, SamplingParams(max_new_tokens=4), 2)  # warm-up
    load_before = os.getloadavg()[0]

    batch_size = args.batch_size or len(prompts) * args.n
    batched, before_s = timed_generate(policy, prompts, args.n, params, batch_size)
    single, single_s = timed_generate(policy, prompts, args.n, params, 1)
    _, after_s = timed_generate(policy, prompts, args.n, params, batch_size)
    batched_s = (before_s + after_s) / 2
    by_pair = {(s.prompt_index, s.sample_index): s.token_ids for s in single}
    identical = sum(by_pair[(s.prompt_index, s.sample_index)] == s.token_ids for s in batched)
    result = {
        "model": "SmolLM2-135M-Instruct (fp32)",
        "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} torch threads)",
        "prompts": len(prompts),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "batched": {"batch_size": batch_size, **summary(batched, batched_s),
                    "seconds_before_after": [round(before_s, 2), round(after_s, 2)]},
        "one_at_a_time": {"batch_size": 1, **summary(single, single_s)},
    }
    result["speedup"] = round(result["batched"]["tokens_per_s"] / result["one_at_a_time"]["tokens_per_s"], 2)
    result["identical_samples"] = f"{identical}/{len(batched)}"
    if not args.skip_hf:
        tokens, seconds = hf_generate(policy, prompts, args.n, params)
        result["hf_generate_batched"] = {"batch_size": len(prompts) * args.n, "tokens": tokens,
                                         "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # other work on the machine
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
