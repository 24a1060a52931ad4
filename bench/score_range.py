"""Where a head-only reward model's scores land, and why: the probe's scale and offset, the barrier's
pull, and what the optimizer can move in the steps it gets. Prints JSON.

    PYTHONPATH=. python bench/score_range.py --data ../shared/data/hh-rlhf-harmless-1800.jsonl --pairs 74

Features are cached in --cache (default /tmp/score-range-features), so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def _range(scores: torch.Tensor) -> dict:
    s = scores.double()
    return {"min": round(float(s.min()), 3), "max": round(float(s.max()), 3), "mean": round(float(s.mean()), 3),
            "std": round(float(s.std()), 3), "outside_share": round(float((s.abs() >= 5).double().mean()), 3)}


def measure(args) -> dict:
    from engine.feature_cache import FeatureCache, FrozenFeatures, final_norm
    from engine.head_probe import probe_from_states
    from engine.head_training import train_head_only
    from engine.recipes import recipe_settings
    from engine.reward_model import RewardModel
    from engine.run_dir import RunDirectory
    from engine.train_config import TrainConfig
    from engine.training import build_reward_model
    from workbench.training import pairs_from_files

    pairs = pairs_from_files([args.data], skip_invalid=True, progress=False)[: args.pairs]
    cache = FeatureCache(args.cache, 4 * 1024**3)
    out = tempfile.mkdtemp() + "/rm"
    config = TrainConfig(base=args.model, out_dir=out, max_length=args.max_length, precision="fp32",
                         feature_cache=args.cache, **recipe_settings(args.recipe, {}))
    rm = build_reward_model(config, torch.device("cpu"))
    encoded = rm.encoder(config.max_length).encode_pairs(pairs)
    features = FrozenFeatures(rm, "fp32", cache, progress=False)
    x = features.compute([s for p in encoded for s in p])  # (2N, H)
    with torch.no_grad():
        normed = final_norm(rm)(x).float()
    report = {"pairs": len(pairs), "recipe": args.recipe, "state_norm_mean": round(float(normed.norm(dim=1).mean()), 2),
              "state_mean_norm": round(float(normed.mean(0).norm()), 2)}
    random_scores = rm.value_head(normed).squeeze(-1).detach()
    report["random_head"] = _range(random_scores)
    probe = probe_from_states(rm, normed[0::2], normed[1::2])
    w = rm.value_head.weight.detach().clone()
    probe_scores = (normed @ w.T).squeeze(-1)
    report["probe"] = {**{k: probe[k] for k in ("l2", "train_accuracy", "score_std")}, "w_norm": round(float(w.norm()), 3),
                       "scores": _range(probe_scores)}
    # the loss's two gradients on the head at the probe's weights
    head = w.clone().requires_grad_(True)
    scores = (normed @ head.T).squeeze(-1)
    settings = config.loss_settings()
    from engine.losses import focal_ranking_loss, log_barrier_penalty

    rank = focal_ranking_loss(scores[0::2], scores[1::2], settings.focal_gamma).mean()
    pen = settings.penalty_weight * log_barrier_penalty(scores, settings.barrier_bound).mean()
    g_rank = torch.autograd.grad(rank, head, retain_graph=True)[0]
    g_pen = torch.autograd.grad(pen, head)[0]
    report["loss_at_probe"] = {"ranking": round(float(rank), 4), "weighted_penalty": round(float(pen), 4),
                               "ranking_grad_norm": round(float(g_rank.norm()), 5),
                               "penalty_grad_norm": round(float(g_pen.norm()), 5)}
    started = time.perf_counter()
    result = train_head_only(config, pairs, None, progress=False, cache=cache)
    trained = RewardModel.load(out)
    with torch.no_grad():
        final_scores = trained.value_head(final_norm(trained)(x)).squeeze(-1)
    metrics = RunDirectory(out).read_metrics()
    report["training"] = {"steps": result.steps, "lr": config.lr, "seconds": round(time.perf_counter() - started, 1),
                          "max_total_adam_move_per_weight": round(sum(m["lr"] for m in metrics), 5),
                          "loss_first_last": [round(metrics[0]["loss"], 4), round(metrics[-1]["loss"], 4)],
                          "penalty_first_last": [round(metrics[0]["penalty"], 3), round(metrics[-1]["penalty"], 3)],
                          "w_change_norm": round(float((trained.value_head.weight - w).norm()), 5)}
    report["trained"] = _range(final_scores)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--pairs", type=int, default=74)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--recipe", default="head-only")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--cache", default="/tmp/score-range-features")
    print(json.dumps(measure(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
