"""Benchmark: reward-model quality on real human labels (hh-rlhf harmless, 1,800 lines).

Split: the valid pairs (1,794; 6 invalid lines refused) are split by a hash of the prompt
(`workbench.models.training.split_heldout`, seed 0): 20% of prompts are held out, so no test prompt is
seen in training. Trains SmolLM2-135M-Instruct with the engine (InternLM2 recipe) within a time
budget on this machine, then reports held-out pairwise accuracy beside two baselines computed on
the same split: "shorter reply wins" and TF-IDF + logistic regression on the replies (trained on
the training split). Prints one JSON object and keeps the model in --out.

    python bench/rm_quality.py --out runs/rm-hh              # the README's command
    python bench/rm_quality.py --out /tmp/rm --max-steps 5   # a smoke run

Target (issue #3): within 45 minutes of training on 2 CPU cores, accuracy clearly above 0.55 and
0.62, aiming for >= 0.68.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"


def tfidf_margins(train, test) -> list[float]:
    """Logistic regression on TF-IDF(chosen) - TF-IDF(rejected), both orientations (symmetric)."""
    from scipy.sparse import vstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    vectorizer.fit([p.chosen for p in train] + [p.rejected for p in train])
    diff = vectorizer.transform([p.chosen for p in train]) - vectorizer.transform([p.rejected for p in train])
    model = LogisticRegression(C=1.0, max_iter=2000, fit_intercept=False)
    model.fit(vstack([diff, -diff]), [1] * len(train) + [0] * len(train))
    test_diff = vectorizer.transform([p.chosen for p in test]) - vectorizer.transform([p.rejected for p in test])
    return list(model.decision_function(test_diff))


def wilson_interval(hits: float, n: int, z: float = 1.96) -> list[float]:
    """95% interval of an accuracy measured on n pairs."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def paired_test(ours: list[float], theirs: list[float]) -> dict:
    """McNemar's exact test on the pairs one side gets right and the other wrong (ties count as wrong)."""
    from scipy.stats import binomtest

    better = sum(1 for a, b in zip(ours, theirs) if a == 1.0 and b < 1.0)
    worse = sum(1 for a, b in zip(ours, theirs) if a < 1.0 and b == 1.0)
    p = binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0
    return {"model_only_right": better, "baseline_only_right": worse, "p_value": round(float(p), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--heldout", type=float, default=0.2)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--pairs-per-step", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--freeze-layers", type=int, default=18)
    parser.add_argument("--head-lr-multiplier", type=float, default=1.0)
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--head-init", default="random", choices=("random", "probe"))
    parser.add_argument("--num-layers", type=int)
    parser.add_argument("--ranking-loss", default="focal", choices=("focal", "bradley_terry"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if not HH.exists():
        raise SystemExit(f"{HH} is missing")
    sys.path.insert(0, str(ROOT))
    from engine.data import ScoringItem
    from engine.evaluation import pair_outcomes
    from engine.train_config import TrainConfig
    from engine.training import train_reward_model
    from workbench.models.training import pairs_from_files, split_heldout

    pairs = pairs_from_files([HH], skip_invalid=True, progress=False)
    train, test = split_heldout(pairs, args.heldout, seed=0)
    config = TrainConfig(base="smollm2", out_dir=args.out, epochs=args.epochs, max_steps=args.max_steps,
                         lr=args.lr, pairs_per_step=args.pairs_per_step, max_length=args.max_length,
                         max_packed_length=max(4096, 2 * args.max_length), lora=args.lora,
                         lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=args.lora_dropout,
                         freeze_layers=0 if args.lora else args.freeze_layers, seed=args.seed,
                         head_lr_multiplier=args.head_lr_multiplier, warmup_ratio=args.warmup_ratio,
                         min_lr_ratio=0.1, checkpoint_every=25, precision=args.precision,
                         head_init=args.head_init, num_layers=args.num_layers, ranking_loss=args.ranking_loss)
    started = time.perf_counter()
    result = train_reward_model(config, train, test, resume=args.resume)
    minutes = (time.perf_counter() - started) / 60
    # per-pair results for intervals and paired tests (the model as saved in --out, re-scored)
    from engine.reward_model import RewardModel
    from engine.scoring import Scorer

    scores = Scorer(RewardModel.load(args.out), max_length=args.max_length, precision=result.precision).score(
        [ScoringItem(p.prompt, reply) for p in test for reply in (p.chosen, p.rejected)])
    model_right = pair_outcomes(scores[0::2], scores[1::2])
    tfidf_margin = tfidf_margins(train, test)
    tfidf_right = pair_outcomes(tfidf_margin, [0.0] * len(tfidf_margin))
    shorter_right = pair_outcomes([-len(p.chosen) for p in test], [-len(p.rejected) for p in test])
    report = {
        "split": {"pairs": len(pairs), "train": len(train), "heldout": len(test),
                  "rule": f"prompts whose hash (seed 0) falls below {args.heldout} are held out"},
        "config": {k: getattr(config, k) for k in ("lr", "epochs", "max_steps", "pairs_per_step", "max_length",
                                                  "freeze_layers", "lora", "lora_r", "lora_dropout", "head_lr_multiplier", "ranking_loss", "penalty",
                                                  "head_init", "num_layers")},
        "precision": result.precision,
        "training_minutes": round(minutes, 1), "train_seconds_in_loop": result.seconds,
        "tokens_per_s": result.tokens_per_s, "steps": result.steps,
        "heldout_accuracy": result.eval["accuracy"], "heldout_mean_margin": result.eval["mean_margin"],
        "heldout_accuracy_95ci": wilson_interval(sum(model_right), len(test)),
        "baselines": {"shorter_wins": result.eval["shorter_baseline"], "longer_wins": result.eval["length_baseline"],
                      "tfidf_logreg": round(sum(tfidf_right) / len(test), 4)},
        "paired_vs_tfidf": paired_test(model_right, tfidf_right),
        "paired_vs_shorter_wins": paired_test(model_right, shorter_right),
    }
    assert abs(sum(model_right) / len(test) - result.eval["accuracy"]) < 0.01, "re-scored accuracy disagrees"
    from engine.run_dir import RunDirectory

    run = RunDirectory(args.out)
    if run.head_probe.exists():
        report["head_probe"] = run.read_json(run.head_probe)
    (Path(args.out) / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
