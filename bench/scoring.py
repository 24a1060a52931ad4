"""Benchmark: `workbench score` throughput vs. a naive loop that scores one response per forward pass.

Best-of-N shaped data: hh-rlhf prompts (multi-turn, as in the file) with N replies each drawn from
the file's replies. Both sides use the same reward model (SmolLM2-135M with a reward token and
value head). The naive side is what a plain transformers user writes: template, append the
reward token, tokenize, one AutoModelForSequenceClassification forward per reply. The workbench
side is the real command path: store -> engine (packed, prompt prefix shared across the N replies)
-> store. Both run in fp32, and, where this CPU has native bf16 (`workbench score`'s default
precision there), both again under bf16 autocast: the speedup is reported at the same precision,
and against the naive fp32 loop, with how closely each scoring agrees with naive fp32.
Prints one JSON object; target (issue #4): >= 5x.

    python bench/scoring.py                  # 24 prompts x N=8
    python bench/scoring.py --prompts 8 --n 4
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"


def bon_records(prompts: int, n: int, seed: int) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from workbench.training import pairs_from_files

    pairs = pairs_from_files([HH], skip_invalid=True, progress=False)
    rng = random.Random(seed)
    replies = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    chosen = rng.sample(pairs, prompts)
    return [{"prompt": p.prompt, "responses": rng.sample(replies, n)} for p in chosen]


def naive_scores(rm_dir: Path, records: list[dict], max_length: int, precision: str) -> tuple[list[float], float]:
    """What a plain transformers user writes: one AutoModelForSequenceClassification forward per reply."""
    import contextlib

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = time.perf_counter()  # loading counts on both sides: `workbench score` loads its model too
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    reward = model.config.reward_token
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    scores = []
    with torch.no_grad(), autocast:
        for record in records:
            for reply in record["responses"]:
                text = tokenizer.apply_chat_template(record["prompt"] + [{"role": "assistant", "content": reply}],
                                                     tokenize=False) + reward
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -max_length:]
                scores.append(model(input_ids=ids).logits[0, 0].float().item())
    return scores, time.perf_counter() - start


def workbench_scores(tmp: Path, rm_dir: Path, records: list[dict], max_length: int, precision: str):
    """`workbench score` on a store holding the records: (scores in record order, seconds, resolved precision)."""
    from workbench.importer import import_files
    from workbench.scoring import score_responses
    from workbench.store import Store, queries

    data = tmp / "bon.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = Store(tmp / f"bench-{precision}.duckdb")
    import_files(store, [data], fmt="bon", progress=False)
    start = time.perf_counter()
    result = score_responses(store, str(rm_dir), max_length=max_length, precision=precision, progress=False)
    seconds = time.perf_counter() - start
    with store.connect() as con:
        stored = dict(queries.fetch_rows(con, "SELECT r.text || chr(0) || p.messages, s.score FROM scores s "
                                        "JOIN responses r USING (response_id) JOIN prompts p USING (prompt_id)"))
        resolved = json.loads(queries.fetch_value(con, "SELECT config FROM runs WHERE kind = 'scoring'"))["precision"]
    from workbench import ids

    ordered = [stored[reply + "\x00" + ids.canonical_messages(r["prompt"])] for r in records for reply in r["responses"]]
    assert result.scored == len(ordered)
    return ordered, seconds, resolved


def order_agreement(a: list[float], b: list[float], n: int) -> float:
    """Share of same-prompt reply pairs that two scorings rank the same way (ties count half)."""
    agree = total = 0.0
    for start in range(0, len(a), n):
        for i in range(start, start + n):
            for j in range(i + 1, start + n):
                x, y = a[i] - a[j], b[i] - b[j]
                agree += 0.5 if x == 0 or y == 0 else float((x > 0) == (y > 0))
                total += 1
    return round(agree / total, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not HH.exists():
        raise SystemExit(f"{HH} is missing: this benchmark uses hh-rlhf prompts and replies")
    import torch

    from engine.backbone import resolve_model_path
    from engine.precision import describe_cpu, resolve_precision
    from engine.reward_model import RewardModel

    records = bon_records(args.prompts, args.n, args.seed)
    fast = resolve_precision("auto", "cpu")  # what `workbench score` uses by default here
    precisions = ["fp32"] + (["bf16"] if fast == "bf16" else [])
    report = {"prompts": args.prompts, "n": args.n, "responses": args.prompts * args.n, "cpu": describe_cpu(),
              "default_precision": fast, "naive": {}, "workbench_score": {}}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(args.seed)
        rm_dir = RewardModel.from_base(resolve_model_path("smollm2")).save(tmp / "rm")
        for precision in precisions:
            ours, seconds, resolved = workbench_scores(tmp, rm_dir, records, args.max_length, precision)
            assert resolved == precision
            scores[("workbench", precision)] = ours
            report["workbench_score"][precision] = {"seconds": round(seconds, 2),
                                                    "responses_per_s": round(len(ours) / seconds, 2)}
            naive, seconds = naive_scores(rm_dir, records, args.max_length, precision)
            scores[("naive", precision)] = naive
            report["naive"][precision] = {"seconds": round(seconds, 2), "responses_per_s": round(len(naive) / seconds, 2)}
    reference = scores[("naive", "fp32")]
    report["speedup_same_precision"] = {p: round(report["naive"][p]["seconds"] / report["workbench_score"][p]["seconds"], 2)
                                        for p in precisions}
    report["speedup_vs_naive_fp32"] = round(report["naive"]["fp32"]["seconds"]
                                            / report["workbench_score"][fast]["seconds"], 2)
    report["agreement_with_naive_fp32"] = {
        f"{who}_{p}": {"max_abs_score_diff": round(max(abs(a - b) for a, b in zip(scores[(who, p)], reference)), 6),
                       "same_order_share": order_agreement(scores[(who, p)], reference, args.n)}
        for who, p in scores if (who, p) != ("naive", "fp32")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
