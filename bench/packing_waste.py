"""How much compute padding wastes on real preference data, padded batches vs. packed rows.

Reads ../shared/data/hh-rlhf-harmless-1800.jsonl (relative to the repository root), templates
every (prompt, chosen) and (prompt, rejected) conversation with the SmolLM2 tokenizer exactly as
the reward model would (chat template + reward token, truncated to --max-length), and reports
as JSON, for each batching scheme, the fraction of compute slots that hold padding:

- token slots (the linear layers' cost): padded = rows x longest row; packed = tokens;
- attention slots (causal score matrix): padded = rows x L(L+1)/2; packed = sum of l(l+1)/2.

Baselines: 8 pairs (16 rows) per padded batch, in random order and length-sorted. Packed:
best-fit-decreasing micro-batches of at most --max-packed-length tokens (2048 and 4096).
With --time it also times one forward+backward of SmolLM2, packed vs. padded, on the same pairs.

Run: python bench/packing_waste.py [--time]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO / ".." / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"


def parse_transcript(text: str) -> list[dict]:
    """Minimal hh-rlhf parser, good enough for lengths: split on the Human/Assistant markers."""
    messages = []
    for chunk in text.split("\n\nHuman: ")[1:]:
        human, *assistant = chunk.split("\n\nAssistant: ")
        messages.append({"role": "user", "content": human})
        messages += [{"role": "assistant", "content": a} for a in assistant]
    return messages


def load_pairs(path: Path):
    from engine.data import PreferencePair

    pairs = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        chosen, rejected = parse_transcript(record["chosen"]), parse_transcript(record["rejected"])
        if not chosen or chosen[-1]["role"] != "assistant" or not rejected or rejected[-1]["role"] != "assistant":
            continue
        pairs.append(PreferencePair(chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]))
    return pairs


def waste(rows: list[list[int]]) -> dict:
    """rows: lengths of the conversations in each padded row-batch (one list per batch)."""
    tokens = sum(sum(b) for b in rows)
    token_slots = sum(len(b) * max(b) for b in rows)
    attention = sum(n * (n + 1) // 2 for b in rows for n in b)
    attention_slots = sum(len(b) * max(b) * (max(b) + 1) // 2 for b in rows)
    return {"batches": len(rows), "token_padding": round(1 - tokens / token_slots, 4),
            "attention_padding": round(1 - attention / attention_slots, 4)}


def padded_batches(pair_lengths, order, pairs_per_batch):
    return [[n for i in order[s:s + pairs_per_batch] for n in pair_lengths[i]]
            for s in range(0, len(order), pairs_per_batch)]


def packed(pair_lengths, max_packed_length):
    from engine.packing import group_by_token_budget

    groups = group_by_token_budget([c + r for c, r in pair_lengths], max_packed_length)
    tokens = sum(c + r for c, r in pair_lengths)
    return {"batches": len(groups), "token_padding": 0.0, "attention_padding": 0.0,
            "fill_if_padded_to_max": round(tokens / (len(groups) * max_packed_length), 4)}


def time_forward_backward(base, encoded, max_packed_length, repeats=2):
    """Seconds per forward+backward (fp32, full fine-tune) of one packed row vs. the same random pairs padded."""
    import torch

    from engine.losses import reward_loss
    from engine.packing import pack_pairs, pad_pairs
    from engine.reward_model import RewardModel

    torch.manual_seed(0)
    rm = RewardModel.from_base(base).train()
    chosen, total = [], 0  # the first pairs of a random order that fit one packed row: a random batch
    for pair in encoded:
        if total + len(pair[0]) + len(pair[1]) > max_packed_length:
            break
        chosen.append(pair)
        total += len(pair[0]) + len(pair[1])
    batches = {"packed": (pack_pairs(chosen), rm.forward_packed),
               "padded": (pad_pairs(chosen, rm.tokenizer.pad_token_id), rm.forward_padded)}
    result = {"pairs": len(chosen), "tokens": batches["packed"][0].n_tokens,
              "padded_shape": list(batches["padded"][0].input_ids.shape)}
    for name, (batch, forward) in batches.items():
        times = []
        for _ in range(repeats):
            rm.model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            reward_loss(forward(batch)).total.backward()
            times.append(time.perf_counter() - start)
        result[f"{name}_s"] = round(min(times), 3)
    result["speedup"] = round(result["padded_s"] / result["packed_s"], 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=1024, help="truncate each conversation to this")
    parser.add_argument("--pairs-per-batch", type=int, default=8)
    parser.add_argument("--time", action="store_true", help="also time SmolLM2 forward+backward, packed vs padded")
    parser.add_argument("--time-max-packed-length", type=int, default=2048)
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"{DATA.resolve()} is missing: this benchmark needs the shared hh-rlhf sample "
                 "(../shared/data/hh-rlhf-harmless-1800.jsonl relative to the repository root)")

    from transformers import AutoTokenizer

    from engine.backbone import resolve_model_path
    from engine.conversation import ConversationEncoder

    base = resolve_model_path("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    pairs = load_pairs(DATA)
    start = time.perf_counter()
    # the reward token id only matters for its count (one token); any id gives the same lengths
    encoded = ConversationEncoder(tokenizer, tokenizer.eos_token_id, args.max_length).encode_pairs(pairs)
    encode_s = time.perf_counter() - start
    lengths = [(len(c), len(r)) for c, r in encoded]
    flat = sorted(n for pair in lengths for n in pair)

    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    by_length = sorted(order, key=lambda i: sum(lengths[i]))
    report = {
        "pairs": len(pairs),
        "conversations": len(flat),
        "tokens": sum(flat),
        "encode_s": round(encode_s, 2),
        "length_tokens": {"min": flat[0], "median": flat[len(flat) // 2], "p90": flat[int(len(flat) * 0.9)],
                          "max": flat[-1], "truncated_at": args.max_length},
        f"padded_{args.pairs_per_batch}_pairs_random": waste(padded_batches(lengths, order, args.pairs_per_batch)),
        f"padded_{args.pairs_per_batch}_pairs_length_sorted": waste(
            padded_batches(lengths, by_length, args.pairs_per_batch)),
        "packed_2048": packed(lengths, 2048),
        "packed_4096": packed(lengths, 4096),
    }
    if args.time:
        report["smollm2_fwd_bwd_fp32"] = time_forward_backward(base, [encoded[i] for i in order],
                                                               args.time_max_packed_length)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
