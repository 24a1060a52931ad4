"""Benchmark: how close a measured round comes to this machine's compute floor.

Reads a finished round from a store (its samples, the evaluation's replies, the DPO pairs file),
counts the tokens each phase has to push through the model, measures in the same run how many
tokens per second this CPU's model can do (a batched forward with logits for sampling and DPO's
reference pass, the backbone alone for scoring, and a forward + backward with frozen weights for
LoRA training: gradients still flow through every layer, only the small adapters get them), and
prints each phase's floor (tokens / rate) beside its measured time.

The floor is optimistic on purpose: it ignores that decoding runs one token per sequence per step,
padding, the optimizer, tokenisation and I/O. A phase that takes 1.5x its floor is already close to
what this machine can do; the 30-minute target of issue 23 then needs a machine whose rates are
higher, not less bookkeeping.

    python bench/round_floor.py --db STORE --round 1 --policy smollm2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rate(step, tokens: int, repeats: int = 3) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return tokens * repeats / (time.perf_counter() - started)


def measure_rates(model, batch: int, length: int) -> dict:
    """Tokens per second of a forward with logits, the backbone alone, and LoRA-style training."""
    import torch

    ids = torch.randint(100, 40000, (batch, length))
    model.eval()
    with torch.no_grad():
        forward = _rate(lambda: model(input_ids=ids, use_cache=False), batch * length)
        backbone = _rate(lambda: model.model(input_ids=ids, use_cache=False), batch * length)
    for p in model.parameters():
        p.requires_grad_(False)
    embeddings = model.get_input_embeddings()

    def train_step():
        inputs = embeddings(ids).detach().requires_grad_(True)  # the gradient flows through every layer
        model(inputs_embeds=inputs, use_cache=False).logits.float().logsumexp(-1).mean().backward()

    training = _rate(train_step, batch * length, repeats=2)
    return {"forward": round(forward, 1), "backbone": round(backbone, 1), "train_lora": round(training, 1)}


def prompt_tokens(tokenizer, conversations: list[list[dict]]) -> list[int]:
    """Tokens of each conversation rendered by the chat template, with the assistant's turn opened."""
    from engine.tokens import count_tokens

    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    return count_tokens(texts, spec=str(tokenizer.name_or_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--policy", default="smollm2", help="the round's start policy (its tokenizer and model)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=192)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", help="fp32 or bf16 (default: the round's own, resolved on this CPU)")
    parser.add_argument("--rates", help="FORWARD,BACKBONE,TRAIN tokens/s measured before (e.g. on an idle "
                                        "machine): skip measuring them")
    args = parser.parse_args()

    import duckdb
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.backbone import resolve_model_path
    from engine.precision import autocast, resolve_precision
    from engine.tokens import count_tokens

    if args.threads:
        torch.set_num_threads(args.threads)
    con = duckdb.connect(args.db, read_only=True)
    config, evaluation, run = con.execute("SELECT config, evaluation, generation_run FROM rounds WHERE round = ?",
                                          [args.round]).fetchone()
    config, evaluation = json.loads(config), json.loads(evaluation)
    precision = resolve_precision(args.precision or config["dpo"].get("precision", "auto"), "cpu")
    path = resolve_model_path(args.policy)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def sequences(run_id: str) -> list[int]:
        rows = con.execute("SELECT p.messages, r.n_tokens FROM responses r JOIN prompts p USING (prompt_id) "
                           "WHERE r.run_id = ?", [run_id]).fetchall()
        distinct = sorted({m for m, _ in rows})  # a prompt's n samples share its token count
        counts = dict(zip(distinct, prompt_tokens(tokenizer, [json.loads(m) for m in distinct])))
        return [counts[m] + r for m, r in rows]

    sampled = sequences(run)
    evaluated = [t for side in ("a", "b") for t in sequences(evaluation["runs"][side])]
    dpo = config["dpo"]
    out_dir = Path(config["round"]["out_root"]) / f"round-{args.round}"
    rows = [json.loads(line) for line in open(out_dir / "pairs.jsonl")]
    prompts = prompt_tokens(tokenizer, [row["prompt"] for row in rows])
    replies = count_tokens([row[side][0]["content"] for row in rows for side in ("chosen", "rejected")],
                           spec=str(tokenizer.name_or_path))
    pair_lengths = [min(prompts[i // 2] + reply + 1, dpo["max_length"]) for i, reply in enumerate(replies)]
    n_pairs = len(pair_lengths) // 2
    epochs_pairs = dpo.get("epochs", 1.0) * n_pairs  # every epoch passes over every pair again
    steps_pairs = min((dpo.get("max_steps") or 0) * dpo["batch_size"] or epochs_pairs, epochs_pairs)
    trained = sum(pair_lengths) / max(n_pairs, 1) * steps_pairs
    heldout = 1 if config["round"].get("heldout_rm") else 0

    if args.rates:
        rates = dict(zip(("forward", "backbone", "train_lora"), map(float, args.rates.split(","))))
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        with autocast(precision, "cpu"):  # the precision the round ran in (weights stay fp32, as there)
            rates = measure_rates(model, args.batch, args.length)
    tokens = {"sample": sum(sampled), "score": sum(sampled), "dpo_reference": sum(pair_lengths),
              "dpo_training": round(trained), "eval_generate": sum(evaluated),
              "eval_score": sum(evaluated) * (1 + heldout)}
    floor = {"sample": tokens["sample"] / rates["forward"], "score": tokens["score"] / rates["backbone"],
             "dpo_reference": tokens["dpo_reference"] / rates["forward"],
             "dpo_training": tokens["dpo_training"] / rates["train_lora"],
             "eval_generate": tokens["eval_generate"] / rates["forward"],
             "eval_score": tokens["eval_score"] / rates["backbone"]}
    phases = {"sample": floor["sample"], "score": floor["score"], "dpo": floor["dpo_reference"] + floor["dpo_training"],
              "eval": floor["eval_generate"] + floor["eval_score"]}
    measured = evaluation.get("phase_seconds", {})
    report = {"round": args.round, "threads": torch.get_num_threads(), "precision": precision,
              "rates_tokens_per_s": rates,
              "tokens": tokens, "floor_s": {k: round(v, 1) for k, v in phases.items()},
              "floor_total_min": round(sum(phases.values()) / 60, 1),
              "measured_s": measured,
              "measured_over_floor": {k: round(measured[k] / phases[k], 2) for k in phases
                                      if measured.get(k, 0) > 1},
              "rate_needed_for_30_min": "x%.2f this machine's" % (sum(phases.values()) / 1800)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
