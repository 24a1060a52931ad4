"""Benchmark: `workbench score` throughput vs. plain transformers loops, on Best-of-N data.

Best-of-N shaped data: hh-rlhf prompts (multi-turn, as in the file) with N replies each drawn from
the file's replies. Both sides use the same reward model, SmolLM2-135M with a value head, in one of
two formats (`--format`):

- `workbench` (default): the workbench's own, with a reward token appended to every conversation.
- `hf`: a stock sequence classifier as TRL's RewardTrainer saves it (no reward token; transformers
  pools at the last non-pad token), registered by `workbench score` through format detection.

Baselines, what a plain transformers user writes: "naive", one AutoModelForSequenceClassification
forward per reply; "careful", replies sorted by length and run in right-padded batches of 16. The
workbench side is the real command path: store -> engine (packed, prompt prefix shared across
the N replies) -> store. All run in fp32, and, where this CPU has native bf16 (`workbench score`'s
default precision there), again under bf16 autocast: speedups are reported at the same precision,
with how closely each scoring agrees with naive fp32.
Prints one JSON object; targets (issues #4, #14): >= 5x naive, >= 2x careful.

    python bench/scoring.py                  # 24 prompts x N=8, workbench format
    python bench/scoring.py --format hf      # the same with a TRL-style reward model
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
    from workbench.models.training import pairs_from_files

    pairs = pairs_from_files([HH], skip_invalid=True, progress=False)
    rng = random.Random(seed)
    replies = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    chosen = rng.sample(pairs, prompts)
    return [{"prompt": p.prompt, "responses": rng.sample(replies, n)} for p in chosen]


def _load_plain(rm_dir: Path, records: list[dict], max_length: int):
    """The model, its tokenizer, and every reply's token ids as a transformers user encodes them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    reward = getattr(model.config, "reward_token", None) or ""  # hf format: nothing appended
    texts = [tokenizer.apply_chat_template(r["prompt"] + [{"role": "assistant", "content": reply}], tokenize=False)
             + reward for r in records for reply in r["responses"]]
    ids = [row[-max_length:] for row in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return model, tokenizer, ids


def _autocast(precision: str):
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def naive_scores(rm_dir: Path, records: list[dict], max_length: int, precision: str) -> tuple[list[float], float]:
    """What a plain transformers user writes: one AutoModelForSequenceClassification forward per reply."""
    import torch

    start = time.perf_counter()  # loading counts on both sides: `workbench score` loads its model too
    model, _, ids = _load_plain(rm_dir, records, max_length)
    with torch.no_grad(), _autocast(precision):
        scores = [model(input_ids=torch.tensor([row])).logits[0, 0].float().item() for row in ids]
    return scores, time.perf_counter() - start


def careful_scores(rm_dir: Path, records: list[dict], max_length: int, precision: str,
                   batch_size: int = 16) -> tuple[list[float], float]:
    """A careful transformers user: replies sorted by length, right-padded batches of `batch_size`."""
    import torch

    start = time.perf_counter()
    model, tokenizer, ids = _load_plain(rm_dir, records, max_length)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    scores = [0.0] * len(ids)
    with torch.no_grad(), _autocast(precision):
        for b in range(0, len(order), batch_size):
            chunk = order[b:b + batch_size]
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in chunk])
            mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in chunk])
            # workbench-format rows end in the reward token, not pad: the stock pooling finds it in both formats
            for i, value in zip(chunk, model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().tolist()):
                scores[i] = value
    return scores, time.perf_counter() - start


def make_reward_model(tmp: Path, fmt: str, seed: int) -> Path:
    """SmolLM2 with a fresh value head, saved in the given format."""
    import torch

    from engine.backbone import resolve_model_path

    torch.manual_seed(seed)
    if fmt == "workbench":
        from engine.reward_model import RewardModel

        return RewardModel.from_base(resolve_model_path("smollm2")).save(tmp / "rm")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = resolve_model_path("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id  # as TRL's RewardTrainer saves it
    model.save_pretrained(tmp / "rm-hf")
    tokenizer.save_pretrained(tmp / "rm-hf")
    return tmp / "rm-hf"


def workbench_scores(tmp: Path, rm_dir: Path, records: list[dict], max_length: int, precision: str):
    """`workbench score` on a store holding the records: (scores in record order, seconds, resolved precision)."""
    from workbench.ingest.importer import import_files
    from workbench.generate.scoring import score_responses
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
    parser.add_argument("--format", choices=["workbench", "hf"], default="workbench",
                        help="the reward model's format (hf: a TRL-style sequence classifier)")
    args = parser.parse_args()
    if not HH.exists():
        raise SystemExit(f"{HH} is missing: this benchmark uses hh-rlhf prompts and replies")
    from engine.precision import describe_cpu, resolve_precision

    records = bon_records(args.prompts, args.n, args.seed)
    fast = resolve_precision("auto", "cpu")  # what `workbench score` uses by default here
    precisions = ["fp32"] + (["bf16"] if fast == "bf16" else [])
    report = {"format": args.format, "prompts": args.prompts, "n": args.n, "responses": args.prompts * args.n,
              "cpu": describe_cpu(), "default_precision": fast, "naive": {}, "careful_batch16": {},
              "workbench_score": {}}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rm_dir = make_reward_model(tmp, args.format, args.seed)
        for precision in precisions:
            ours, seconds, resolved = workbench_scores(tmp, rm_dir, records, args.max_length, precision)
            assert resolved == precision
            scores[("workbench", precision)] = ours
            report["workbench_score"][precision] = {"seconds": round(seconds, 2),
                                                    "responses_per_s": round(len(ours) / seconds, 2)}
            for who, run in (("naive", naive_scores), ("careful_batch16", careful_scores)):
                theirs, seconds = run(rm_dir, records, args.max_length, precision)
                scores[(who, precision)] = theirs
                report[who][precision] = {"seconds": round(seconds, 2),
                                          "responses_per_s": round(len(theirs) / seconds, 2)}
    reference = scores[("naive", "fp32")]
    ours = report["workbench_score"]
    report["speedup_same_precision"] = {
        who: {p: round(report[who][p]["seconds"] / ours[p]["seconds"], 2) for p in precisions}
        for who in ("naive", "careful_batch16")}
    report["speedup_vs_naive_fp32"] = round(report["naive"]["fp32"]["seconds"] / ours[fast]["seconds"], 2)
    report["agreement_with_naive_fp32"] = {
        f"{who}_{p}": {"max_abs_score_diff": round(max(abs(a - b) for a, b in zip(scores[(who, p)], reference)), 6),
                       "same_order_share": order_agreement(scores[(who, p)], reference, args.n)}
        for who, p in scores if (who, p) != ("naive", "fp32")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
