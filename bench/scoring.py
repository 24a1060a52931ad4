"""Benchmark: `workbench score` throughput vs. a naive loop that scores one response per forward pass.

Best-of-N shaped data: hh-rlhf prompts (multi-turn, as in the file) with N replies each drawn from
the file's replies. Both sides use the same reward model (SmolLM2-135M with a reward token and
value head) and fp32. The naive side is what a plain transformers user writes: template, append the
reward token, tokenize, one AutoModelForSequenceClassification forward per reply. The workbench
side is the real command path: store -> engine (packed, prompt prefix shared across the N replies)
-> store. Prints one JSON object; target (issue #4): >= 5x.

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


def naive_scores(rm_dir: Path, records: list[dict], max_length: int) -> tuple[list[float], float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    reward = model.config.reward_token
    scores = []
    start = time.perf_counter()
    with torch.no_grad():
        for record in records:
            for reply in record["responses"]:
                text = tokenizer.apply_chat_template(record["prompt"] + [{"role": "assistant", "content": reply}],
                                                     tokenize=False) + reward
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -max_length:]
                scores.append(model(input_ids=ids).logits[0, 0].item())
    return scores, time.perf_counter() - start


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
    from engine.reward_model import RewardModel
    from workbench.importer import import_files
    from workbench.scoring import score_responses
    from workbench.store import Store, queries

    records = bon_records(args.prompts, args.n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(args.seed)
        rm_dir = RewardModel.from_base(resolve_model_path("smollm2")).save(tmp / "rm")
        data = tmp / "bon.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records))
        store = Store(tmp / "bench.duckdb")
        import_files(store, [data], fmt="bon", progress=False)

        start = time.perf_counter()
        result = score_responses(store, str(rm_dir), max_length=args.max_length, progress=False)
        workbench_seconds = time.perf_counter() - start
        with store.connect() as con:
            stored = dict(queries.rows(con, "SELECT r.text || chr(0) || p.text, s.score FROM scores s "
                                            "JOIN responses r USING (response_id) JOIN prompts p USING (prompt_id)"))
        naive, naive_seconds = naive_scores(rm_dir, records, args.max_length)

    ours = []
    from workbench.importer import _last_user_text
    for record in records:
        for reply in record["responses"]:
            ours.append(stored[reply + "\x00" + _last_user_text(record["prompt"])])
    diff = max(abs(a - b) for a, b in zip(ours, naive))
    responses = args.prompts * args.n
    report = {
        "prompts": args.prompts, "n": args.n, "responses": responses, "scored": result.scored,
        "naive": {"seconds": round(naive_seconds, 2), "responses_per_s": round(responses / naive_seconds, 2)},
        "workbench_score": {"seconds": round(workbench_seconds, 2),
                            "responses_per_s": round(responses / workbench_seconds, 2)},
        "speedup": round(naive_seconds / workbench_seconds, 2),
        "max_abs_score_diff": diff,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
