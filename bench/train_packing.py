"""Benchmark: packed vs. padded reward-model training on the hh-rlhf length mix.

Same model (SmolLM2-135M by default), same pairs, same number of optimizer steps; each variant
runs in its own process so peak memory is per variant. Prints one JSON object.

    python bench/train_packing.py                     # 6 steps x 8 pairs, max_length 512
    python bench/train_packing.py --steps 3 --base tests-tiny

Effective tokens/s counts real tokens only (padding excluded). Target (issue #3): packed >= 1.5x
padded, peak memory no higher.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"


def load_pairs(n: int, seed: int):
    sys.path.insert(0, str(ROOT))
    from workbench.models.training import pairs_from_files

    pairs = pairs_from_files([HH], skip_invalid=True, progress=False)
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def run_variant(variant: str, base: str, steps: int, pairs_per_step: int, max_length: int, seed: int) -> dict:
    import resource
    import time

    import torch

    from engine.backbone import resolve_model_path
    from engine.losses import reward_loss
    from engine.packing import group_pairs, pack_pairs, pad_pairs
    from engine.reward_model import RewardModel

    torch.manual_seed(seed)
    pairs = load_pairs(steps * pairs_per_step, seed)
    rm = RewardModel.from_base(resolve_model_path(base))
    if variant == "padded":
        rm.seqcls.set_attn_implementation("sdpa")  # the obvious baseline: padding + attention mask
    rm.train()
    encoded = rm.encoder(max_length).encode_pairs(pairs)
    optimizer = torch.optim.AdamW(rm.trainable_parameters(), lr=1e-5)
    real_tokens = slots = 0
    start = time.perf_counter()
    for step in range(steps):
        chunk = encoded[step * pairs_per_step:(step + 1) * pairs_per_step]
        if variant == "packed":
            batches = [pack_pairs([chunk[i] for i in g], pad_token_id=rm.tokenizer.pad_token_id)
                       for g in group_pairs(chunk, 2 * max_length * pairs_per_step)]
        else:
            batches = [pad_pairs(chunk, rm.tokenizer.pad_token_id)]
        for batch in batches:
            scores = rm.forward_packed(batch) if variant == "packed" else rm.forward_padded(batch)
            (reward_loss(scores).total / len(chunk)).backward()
            real_tokens += batch.n_tokens
            slots += batch.input_ids.numel()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "real_tokens": real_tokens, "token_slots": slots,
            "padding_share": round(1 - real_tokens / slots, 4),
            "effective_tokens_per_s": round(real_tokens / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="smollm2")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--pairs-per-step", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not HH.exists():
        raise SystemExit(f"{HH} is missing: this benchmark uses the hh-rlhf length mix")
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.base, args.steps, args.pairs_per_step, args.max_length,
                                     args.seed)))
        return
    report = {"base": args.base, "steps": args.steps, "pairs_per_step": args.pairs_per_step,
              "max_length": args.max_length, "dtype": "float32"}
    for variant in ("padded", "packed"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--base", args.base,
                              "--steps", str(args.steps), "--pairs-per-step", str(args.pairs_per_step),
                              "--max-length", str(args.max_length), "--seed", str(args.seed)],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            raise SystemExit(out.stderr)
        report[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    report["speedup_effective_tokens_per_s"] = round(
        report["packed"]["effective_tokens_per_s"] / report["padded"]["effective_tokens_per_s"], 2)
    report["peak_memory_ratio_packed_over_padded"] = round(
        report["packed"]["peak_rss_mb"] / report["padded"]["peak_rss_mb"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
