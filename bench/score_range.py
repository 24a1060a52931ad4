"""Where a head-only reward model's scores land on its own training data, with the head probe fitted
on differences alone (as before) and under the trainer's score penalty (now), side by side. Prints JSON.

    PYTHONPATH=. python bench/score_range.py --data ../shared/data/hh-rlhf-harmless-1800.jsonl --pairs 74
    PYTHONPATH=. python bench/score_range.py --data ... --pairs 74 --separable   # pairs a direction ranks

`--separable` relabels each pair by a random direction of the reward-token states, so a linear head
ranks every pair right (as with the demo's contrastive pairs). Features are cached in --cache
(default /tmp/score-range-features), so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch


def _range(scores: torch.Tensor) -> dict:
    s = scores.double()
    return {"min": round(float(s.min()), 3), "max": round(float(s.max()), 3), "mean": round(float(s.mean()), 3),
            "outside_share": round(float((s.abs() >= 5).double().mean()), 3)}


def _train(config, pairs, cache, x, plain_probe: bool) -> dict:
    import engine.head_probe as head_probe
    from engine.feature_cache import final_norm
    from engine.head_training import train_head_only
    from engine.losses import LossSettings
    from engine.reward_model import RewardModel
    from engine.run_dir import RunDirectory

    fit = head_probe.probe_from_states
    if plain_probe:  # the probe as it was: Bradley-Terry on differences, no penalty, no shrink
        head_probe.probe_from_states = lambda rm, c, r, started=None, losses=None: fit(
            rm, c, r, started, LossSettings(penalty="none"))
    try:
        result = train_head_only(config, pairs, None, progress=False, cache=cache)
    finally:
        head_probe.probe_from_states = fit
    run = RunDirectory(config.out_dir)
    trained = RewardModel.load(run.path)
    with torch.no_grad():
        scores = trained.value_head(final_norm(trained)(x)).squeeze(-1)
    metrics = run.read_metrics()
    probe = run.read_json(run.head_probe)
    return {"probe": {k: probe[k] for k in ("l2", "train_accuracy", "score_range")},
            "steps": result.steps, "lr": config.lr,
            "adam_move_bound_per_weight": round(sum(m["lr"] for m in metrics), 5),
            "loss_first_steps": [round(m["loss"], 3) for m in metrics][:6],
            "weighted_penalty_first_last": [round(config.penalty_weight * metrics[i]["penalty"], 3) for i in (0, -1)],
            "trained_scores": _range(scores), "train_accuracy": round(result.final_accuracy, 3)}


def measure(args) -> dict:
    from engine.data import PreferencePair
    from engine.feature_cache import FeatureCache, FrozenFeatures, final_norm
    from engine.recipes import recipe_settings
    from engine.train_config import TrainConfig
    from engine.training import build_reward_model
    from workbench.models.training import pairs_from_files

    pairs = pairs_from_files([args.data], skip_invalid=True, progress=False)[: args.pairs]
    cache = FeatureCache(args.cache, 4 * 1024**3)
    settings = recipe_settings("head-only", {"base": args.model, "max_length": args.max_length, "precision": "fp32",
                                             "feature_cache": args.cache, "epochs": args.epochs})
    rm = build_reward_model(TrainConfig(out_dir=tempfile.mkdtemp(), **settings), torch.device("cpu"))
    features = FrozenFeatures(rm, "fp32", cache, progress=False)
    encoded = rm.encoder(args.max_length).encode_pairs(pairs)
    x = features.compute([s for p in encoded for s in p])  # (2N, H) entering the final norm
    with torch.no_grad():
        normed = final_norm(rm)(x).float()
    if args.separable:
        direction = torch.randn(normed.shape[1], generator=torch.Generator().manual_seed(0))
        keep = (normed[0::2] @ direction) > (normed[1::2] @ direction)
        pairs = [p if k else PreferencePair(p.prompt, p.rejected, p.chosen) for p, k in zip(pairs, keep.tolist())]
        x = x[[j for i, k in enumerate(keep.tolist()) for j in ((2 * i, 2 * i + 1) if k else (2 * i + 1, 2 * i))]]
    report = {"pairs": len(pairs), "separable": args.separable, "epochs": args.epochs,
              "state_norm_mean": round(float(normed.norm(dim=1).mean()), 2),
              "norm_of_mean_state": round(float(normed.mean(0).norm()), 2),
              "mean_pair_difference_norm": round(float((normed[0::2] - normed[1::2]).norm(dim=1).mean()), 2)}
    for name, plain in (("before_probe_on_differences", True), ("now_probe_under_penalty", False)):
        config = TrainConfig(out_dir=tempfile.mkdtemp() + "/rm", **settings)
        report[name] = _train(config, pairs, cache, x, plain)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--pairs", type=int, default=74)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--separable", action="store_true")
    parser.add_argument("--epochs", type=float, default=1.0, help="the recipe's is 1; more: a longer run")
    parser.add_argument("--cache", default="/tmp/score-range-features")
    print(json.dumps(measure(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
