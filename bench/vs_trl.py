"""Benchmark: `workbench rm train` against TRL's `RewardTrainer`, side by side, at equal wall time.

Three runs, each in its own process, on the same pairs (hh-rlhf harmless by default; pairs whose
chosen or rejected conversation is longer than --max-length tokens are dropped for everyone,
since TRL drops them too), held-out prompts split off by hash (`workbench.models.training.split_heldout`):

- `trl`: TRL `RewardTrainer` as a typical user runs it: SmolLM2-135M-Instruct as
  `AutoModelForSequenceClassification`, peft `LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
  target_modules="all-linear", modules_to_save=["score"])`, batch 8, max length 512, bf16 where the
  hardware runs it natively, its default collator (pads each batch to its longest sequence) and its
  other defaults (RewardConfig turns gradient checkpointing on: less memory, about a third more compute);
- `trl_no_gc` (not in the default set: `--runs trl_no_gc,...`): the same with gradient checkpointing
  off, the fastest TRL a user gets from one flag;
- `workbench`: the engine with the same backbone, LoRA settings, batch (8 pairs per step), lr and
  pairs: packed micro-batches, no padding, each pair's prompt computed once for both replies (its
  real tokens count both whole conversations, as TRL's do; `computed_tokens_per_s` what it ran);
- `head_only`: the default recipe (frozen backbone, features computed once, head probed then
  trained); it runs to the end (its feature pass is its cost) and reports its own time.

The LoRA runs stop at the first step past --budget-s seconds of training (setup not counted,
reported apart). Reported per run: real (non-padding) tokens per second of training, the padding
share of the batch slots, peak RSS, held-out accuracy; and McNemar's exact test between each two
runs on the same held-out pairs; and how much of the machine each run uses: model FLOPs of the real
tokens per second (`bench/flops.py`; no padding, no recomputation) as a share of a bf16/fp32 matmul
peak measured at the start of the same run. Prints one JSON object (`--out FILE` keeps it).

    flock /tmp/heavy.lock python bench/vs_trl.py --budget-s 900              # the measurement
    flock /tmp/heavy.lock python bench/vs_trl.py --budget-s 60 --train-pairs 200 --heldout-pairs 100  # smoke

Targets (issue #15): workbench >= 2x TRL's real tokens/s; held-out accuracy not below TRL's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from flops import PASSES, causal_mean_context, decoder_forward_flops_per_token, matmul_peak_gflops  # noqa: E402
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"
LR = 2e-4
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _read(path: str):
    from engine.data import PreferencePair

    pairs = []
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        pairs.append(PreferencePair(r["prompt"], r["chosen"][0]["content"], r["rejected"][0]["content"]))
    return pairs


# ---- workers (one process each) -----------------------------------------------------------------


def worker_trl(args, gradient_checkpointing: bool | None = None) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from engine.precision import resolve_precision

    started = time.perf_counter()
    bf16 = torch.cuda.is_available() or resolve_precision("auto", torch.device("cpu")) == "bf16"
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    dataset = load_dataset("json", data_files=args.train, split="train")
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules="all-linear", modules_to_save=["score"], task_type="SEQ_CLS")
    config = RewardConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, max_length=args.max_length,
                          learning_rate=LR, num_train_epochs=1, bf16=bf16, use_cpu=not torch.cuda.is_available(),
                          logging_steps=10, save_strategy="no", report_to=[], seed=0,
                          **({} if gradient_checkpointing is None else {"gradient_checkpointing": gradient_checkpointing}))
    counts = {"real": 0, "slots": 0, "steps": 0}
    clock = {}

    class Budget(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock["start"] = time.perf_counter()

        def on_step_end(self, _args, state, control, **__):
            counts["steps"] = state.global_step
            if time.perf_counter() - clock["start"] > args.budget_s:
                control.should_training_stop = True

    trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config, callbacks=[Budget()])
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        masks = [batch[k] for k in batch if k.endswith("attention_mask")]  # chosen and rejected rows
        counts["real"] += int(sum(int(m.sum()) for m in masks))
        counts["slots"] += int(sum(m.numel() for m in masks))
        return batch

    trainer.data_collator = counting
    setup = time.perf_counter() - started
    trainer.train()
    seconds = time.perf_counter() - clock["start"]
    per_batch = counts["real"] / max(1, counts["steps"] + 1)  # the loader fetches one batch ahead
    real = counts["real"] - per_batch if counts["steps"] else counts["real"]
    outcomes = _trl_outcomes(trainer.model, tokenizer, _read(args.heldout), args.max_length, bf16)
    return {"steps": counts["steps"], "train_seconds": round(seconds, 1), "setup_seconds": round(setup, 1),
            "real_tokens_per_s": round(real / seconds, 1),
            "padding_share": round(1 - counts["real"] / max(1, counts["slots"]), 3),
            "precision": "bf16" if bf16 else "fp32", "gradient_checkpointing": bool(config.gradient_checkpointing),
            "peak_rss_mb": _peak_rss_mb(), "outcomes": outcomes}


def _trl_outcomes(model, tokenizer, pairs, max_length: int, bf16: bool) -> list[float]:
    import torch

    model.eval()
    outcomes = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for p in pairs:
            scores = []
            for reply in (p.chosen, p.rejected):
                ids = tokenizer.apply_chat_template([*p.prompt, {"role": "assistant", "content": reply}],
                                                    tokenize=True, return_dict=True)["input_ids"][-max_length:]
                scores.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
            outcomes.append(1.0 if scores[0] > scores[1] else 0.5 if scores[0] == scores[1] else 0.0)
    return outcomes


def worker_workbench(args) -> dict:
    import torch

    from engine.distributed import compute_init
    from engine.evaluation import pair_outcomes
    from engine.scoring import Scorer
    from engine.train_config import TrainConfig
    from engine.training import _Trainer

    started = time.perf_counter()
    config = TrainConfig(base=args.model, out_dir=tempfile.mkdtemp(), lora=True, lora_r=LORA["r"],
                         lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], lr=LR, pairs_per_step=8,
                         max_length=args.max_length, epochs=1, precision="auto", warmup_ratio=0.0)
    torch.manual_seed(0)
    trainer = _Trainer(config, compute_init("auto"), _read(args.train), None, progress=False)
    trainer.rm.train()
    setup = time.perf_counter() - started
    t0 = time.perf_counter()
    real = computed = steps = 0
    while steps < trainer.steps and time.perf_counter() - t0 <= args.budget_s:
        metrics = trainer.run_step(steps)
        real, computed, steps = real + metrics["tokens"], computed + metrics["computed_tokens"], steps + 1
    seconds = time.perf_counter() - t0
    heldout = _read(args.heldout)
    from engine.data import ScoringItem

    scores = Scorer(trainer.rm, max_length=args.max_length, precision=trainer.precision).score(
        [ScoringItem(p.prompt, r) for p in heldout for r in (p.chosen, p.rejected)])
    return {"steps": steps, "train_seconds": round(seconds, 1), "setup_seconds": round(setup, 1),
            "real_tokens_per_s": round(real / seconds, 1), "padding_share": 0.0, "precision": trainer.precision,
            "computed_tokens_per_s": round(computed / seconds, 1), "prompt_shared": trainer.share_prefix,
            "peak_rss_mb": _peak_rss_mb(), "outcomes": pair_outcomes(scores[0::2], scores[1::2])}


def worker_head_only(args) -> dict:
    from engine.evaluation import pair_outcomes
    from engine.feature_cache import FeatureCache
    from engine.head_training import HeadScorer, train_head_only
    from engine.recipes import recipe_settings
    from engine.train_config import TrainConfig

    started = time.perf_counter()
    out = tempfile.mkdtemp()
    config = TrainConfig(base=args.model, out_dir=out + "/rm", max_length=args.max_length,
                         **recipe_settings("head-only", {}))
    cache = FeatureCache(out + "/features", 2 * 1024**3)  # cold: the feature pass is part of its time
    result = train_head_only(config, _read(args.train), None, progress=False, cache=cache)
    from engine.data import ScoringItem
    from engine.feature_cache import FrozenFeatures
    from engine.reward_model import RewardModel

    rm = RewardModel.load(out + "/rm")
    heldout = _read(args.heldout)
    scorer = HeadScorer(rm, FrozenFeatures(rm, result.precision, cache, progress=False), args.max_length)
    scores = scorer.score([ScoringItem(p.prompt, r) for p in heldout for r in (p.chosen, p.rejected)])
    seconds = time.perf_counter() - started
    real = sum(len(ids) for ids in rm.encoder(args.max_length).encode_many(
        [(p.prompt, r) for p in _read(args.train) for r in (p.chosen, p.rejected)]))
    return {"total_seconds": round(seconds, 1), "feature_seconds": result.features["feature_seconds"],
            "real_tokens_per_s_feature_pass": round(real / max(1e-9, result.features["feature_seconds"]), 1),
            "padding_share": 0.0, "precision": result.precision, "peak_rss_mb": _peak_rss_mb(),
            "outcomes": pair_outcomes(scores[0::2], scores[1::2])}


WORKERS = {"trl": worker_trl, "trl_no_gc": lambda args: worker_trl(args, gradient_checkpointing=False),
           "workbench": worker_workbench, "head_only": worker_head_only}


# ---- the driver -------------------------------------------------------------------------------------


def prepare(args, work: Path) -> tuple[str, str, dict]:
    """Write the train and held-out pairs both sides use; returns their paths and counts."""
    from transformers import AutoTokenizer

    from workbench.models.training import pairs_from_files, split_heldout, write_pairs

    pairs = pairs_from_files([args.data], skip_invalid=True, progress=False)
    train, heldout = split_heldout(pairs, 0.2, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def lengths(p) -> list[int]:  # +1: room for our reward token
        return [len(tokenizer.apply_chat_template([*p.prompt, {"role": "assistant", "content": r}], tokenize=True,
                                                  return_dict=True)["input_ids"]) + 1 for r in (p.chosen, p.rejected)]

    def fits(p) -> bool:  # TRL drops longer pairs
        return max(lengths(p)) <= args.max_length

    fitting_train, fitting_heldout = [p for p in train if fits(p)], [p for p in heldout if fits(p)]
    dropped = len(train) + len(heldout) - len(fitting_train) - len(fitting_heldout)
    kept_train, kept_heldout = fitting_train[:args.train_pairs], fitting_heldout[:args.heldout_pairs]
    write_pairs(kept_train, work / "train.jsonl")
    write_pairs(kept_heldout, work / "heldout.jsonl")
    for name in ("train.jsonl", "heldout.jsonl"):  # TRL's conversational schema: no extra columns
        lines = [json.loads(line) for line in (work / name).read_text().splitlines()]
        (work / name).write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n"
                                         for r in lines))
    train_lengths = [n for p in kept_train for n in lengths(p)]
    counts = {"pairs": len(pairs), "train": len(kept_train), "heldout": len(kept_heldout),
              "dropped_longer_than_max_length": dropped,
              "mean_train_conversation_tokens": round(sum(train_lengths) / max(1, len(train_lengths)), 1),
              "mean_causal_context": round(causal_mean_context(train_lengths), 1)}
    return str(work / "train.jsonl"), str(work / "heldout.jsonl"), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HH))
    parser.add_argument("--model", default="smollm2", help="backbone (smollm2 or an HF directory)")
    parser.add_argument("--budget-s", type=float, default=900.0, help="training seconds per LoRA run")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--train-pairs", type=int, default=100_000, help="cap on training pairs")
    parser.add_argument("--heldout-pairs", type=int, default=100_000, help="cap on held-out pairs")
    parser.add_argument("--runs", default="trl,workbench,head_only")
    parser.add_argument("--out", help="also write the report (JSON) to this file")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--heldout", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    unknown = sorted(set(args.runs.split(",")) - set(WORKERS))
    if unknown:
        parser.error(f"--runs: unknown run(s) {', '.join(unknown)} (choose from {', '.join(WORKERS)})")
    if not Path(args.data).exists():
        sys.exit(f"{args.data} is missing (pass --data FILE)")
    from engine.backbone import resolve_model_path
    from rm_quality import paired_test, wilson_interval

    args.model = str(resolve_model_path(args.model))
    work = Path(tempfile.mkdtemp(prefix="vs-trl-"))
    train, heldout, counts = prepare(args, work)
    peaks = {name: round(matmul_peak_gflops(name), 1) for name in ("bf16", "fp32")}  # idle machine, this run
    results = {}
    for name in args.runs.split(","):
        argv = [sys.executable, __file__, "--worker", name, "--model", args.model, "--train", train,
                "--heldout", heldout, "--budget-s", str(args.budget_s), "--max-length", str(args.max_length)]
        print(f"[vs_trl] {name}: running (log {work / (name + '.log')})", file=sys.stderr, flush=True)
        with open(work / f"{name}.log", "w") as log:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if done.returncode:
            sys.exit(f"the {name} run failed:\n{(work / (name + '.log')).read_text()[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        (work / f"{name}.json").write_text(json.dumps(results[name]))  # kept if a later run fails
        print(f"[vs_trl] {name}: done, result in {work / (name + '.json')}", file=sys.stderr, flush=True)
    for r in results.values():
        outcomes = r.pop("outcomes")
        r["heldout_accuracy"] = round(sum(outcomes) / len(outcomes), 4)
        r["heldout_interval_95"] = wilson_interval(sum(outcomes), len(outcomes))
        r["_outcomes"] = outcomes
    names = list(results)
    tests = {f"{a}_vs_{b}": paired_test(results[a]["_outcomes"], results[b]["_outcomes"])
             for i, a in enumerate(names) for b in names[i + 1:]}
    for r in results.values():
        del r["_outcomes"]
    from transformers import AutoConfig

    forward = decoder_forward_flops_per_token(AutoConfig.from_pretrained(args.model), counts["mean_causal_context"])
    for name, r in results.items():  # model FLOPs of real tokens only (no padding, no recomputation)
        if name == "head_only":  # its feature pass shares prompts without counting the tokens it ran
            continue
        # the tokens the model ran: a shared prompt once
        tokens_per_s = r.get("computed_tokens_per_s") or r["real_tokens_per_s"]
        gflops = tokens_per_s * forward * PASSES["lora"] / 1e9
        r["model_gflops_per_s"] = round(gflops, 1)
        r["share_of_matmul_peak"] = round(gflops / peaks[r["precision"]], 3)
    report = {"data": counts, "budget_s": args.budget_s, "max_length": args.max_length, "batch_pairs": 8,
              "lora": LORA, "lr": LR, "matmul_peak_gflops": peaks,
              "forward_gflops_per_token": round(forward / 1e9, 3), "runs": results, "paired_tests": tests}
    if "trl" in results and "workbench" in results:
        report["speedup_real_tokens_per_s"] = round(
            results["workbench"]["real_tokens_per_s"] / results["trl"]["real_tokens_per_s"], 2)
        report["targets"] = {"speedup_at_least_2x": report["speedup_real_tokens_per_s"] >= 2.0,
                             "accuracy_not_below_trl": results["workbench"]["heldout_accuracy"]
                             >= results["trl"]["heldout_accuracy"]}
    if "trl_no_gc" in results and "workbench" in results:
        report["speedup_vs_trl_no_gc"] = round(
            results["workbench"]["real_tokens_per_s"] / results["trl_no_gc"]["real_tokens_per_s"], 2)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
