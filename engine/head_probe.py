"""Linear probing before fine-tuning (LP-FT): fit the value head on the frozen backbone first.

A fresh value head scores at random, and the first fine-tuning steps then spend the backbone's
gradient on chasing it; with few pairs this distorts features the backbone already has (Kumar et
al., 2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").
`probe_value_head` runs the frozen backbone once over the training pairs, keeps each
conversation's hidden state at the reward token, and fits the head to them: Bradley-Terry
logistic regression on chosen - rejected states, an L2 strength picked by k-fold cross-validation
on the training pairs (never the held-out ones), solved with L-BFGS in float64. Fine-tuning then
starts from the best linear reward model the backbone already supports.

The fit also carries the trainer's score penalty (0.01 x log barrier by default) on every training
score. Differences alone leave the scores' offset `w . mean state` free, and reward-token states
share a large common component (SmolLM2: the mean state's norm is ~99% of a state's), so on easily
separated pairs the probe used to start the trainer at scores of -30 and beyond, which a head
trained at lr 1e-4 for a few steps cannot pull back (docs/reward-model-training.md). Where the soft
penalty still leaves a score past RANGE_SHARE of the bound, w is shrunk onto it (rankings unchanged).

Under torchrun each rank encodes its share of the pairs and the states are summed over ranks,
so every rank fits the same head. Sequence parallel and FSDP runs cannot use it (refused).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from engine.losses import LossSettings, score_penalty
from engine.progress import progress_bar
from engine.reward_pass import pair_units, reward_token_pass

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
RANGE_SHARE = 0.8  # the probe's training scores stay within this share of the barrier's bound
FOLDS = 5


def reward_states(rm, pairs: list[tuple[list[int], list[int]]], max_packed_length: int, precision: str,
                  rank: int = 0, world_size: int = 1, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) final hidden states at the reward token, (N, H) float32 each, on the CPU."""
    mine = list(range(rank, len(pairs), world_size))
    bar = progress_bar(len(mine), "head probe: backbone pass", unit=" pairs", enabled=progress and rank == 0)
    try:  # each pair's prompt computed once where the kernel reads that layout
        rows = reward_token_pass(rm, pair_units([pairs[i] for i in mine], rm.reads_shared_prefixes),
                                 max_packed_length, precision, read=rm.reward_hidden,
                                 on_batch=lambda n: bar.update(n // 2))  # (2 * len(mine), H): chosen, rejected, ...
    finally:
        bar.close()
    states = torch.zeros(2 * len(pairs), rows.shape[-1] if rows.numel() else rm.decoder.config.hidden_size)
    index = torch.tensor([2 * i + k for i in mine for k in (0, 1)], dtype=torch.long)
    if len(mine):
        states[index] = rows
    if world_size > 1:
        states = states.to(rm.device)
        dist.all_reduce(states)  # each row was filled by exactly one rank
        states = states.cpu()
    return states[0::2], states[1::2]


def fit_linear_head(diff: torch.Tensor, l2: float, max_iter: int = 200, states: torch.Tensor | None = None,
                    losses: LossSettings | None = None) -> torch.Tensor:
    """w minimising mean(softplus(-diff @ w)) + l2 * |w|^2 (Bradley-Terry on state differences).

    Given the pairs' `states` (N, 2, H), also + lambda * mean(penalty(states @ w)), the score
    penalty the trainer applies (`losses`, default `LossSettings()`): differences alone leave the
    scores' scale and offset free (module docstring), and the trainer cannot pull them back."""
    diff = diff.double()
    scores_of = states.double().reshape(-1, states.shape[-1]) if states is not None else None
    losses = losses or LossSettings()
    w = torch.zeros(diff.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ w)).mean() + l2 * (w @ w)
        if scores_of is not None:
            loss = loss + losses.penalty_weight * score_penalty(scores_of @ w, losses).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def cross_validate(diff: torch.Tensor, grid=L2_GRID, folds: int = FOLDS, states: torch.Tensor | None = None,
                   losses: LossSettings | None = None) -> dict[float, float]:
    """Mean held-out-fold accuracy (ties half) of each L2 strength; folds are contiguous index blocks.
    `states`, `losses`: as `fit_linear_head`."""
    n = diff.shape[0]
    bounds = [n * f // folds for f in range(folds + 1)]
    results = {}
    for l2 in grid:
        correct = 0.0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            train = torch.cat([diff[:lo], diff[hi:]])
            fold_states = torch.cat([states[:lo], states[hi:]]) if states is not None else None
            margin = diff[lo:hi].double() @ fit_linear_head(train, l2, states=fold_states, losses=losses)
            correct += float((margin > 0).sum() + 0.5 * (margin == 0).sum())
        results[l2] = correct / n
    return results


def inside_limit(losses: LossSettings) -> float | None:
    """The largest |score| the probe leaves on its training states: RANGE_SHARE of the log barrier's
    bound (room for fine-tuning to widen margins), or None where no penalty bounds the scores."""
    return RANGE_SHARE * losses.barrier_bound if losses.penalty == "log_barrier" else None


def probe_value_head(rm, pairs, max_packed_length: int, precision: str, rank: int = 0, world_size: int = 1,
                     progress: bool = True, cache=None, losses: LossSettings | None = None) -> dict:
    """Fit `rm`'s value head (Linear(H, 1), no bias) on the frozen backbone; returns what it found.

    With a `FeatureCache` (one process only), the states come from it where an earlier run on the
    same backbone left them, and the rest are computed once and added (engine.feature_cache)."""
    started = time.perf_counter()
    if cache is not None and world_size == 1:
        from engine.feature_cache import FrozenFeatures, final_norm

        features = FrozenFeatures(rm, precision, cache, progress=progress)
        x = features.compute([s for pair in pairs for s in pair], "head probe: backbone features")
        with torch.no_grad():
            states = final_norm(rm)(x.to(rm.device)).float().cpu()
        chosen, rejected = states[0::2], states[1::2]
    else:
        chosen, rejected = reward_states(rm, pairs, max_packed_length, precision, rank, world_size, progress)
    return probe_from_states(rm, chosen, rejected, started, losses)


def probe_cache(config, world_size: int):
    """The feature cache a run's probe reads, or None where states are not cacheable (several
    processes, a 4-bit backbone)."""
    if world_size > 1 or config.qlora:
        return None
    from engine.feature_cache import FeatureCache

    return FeatureCache.open(config.feature_cache, config.feature_cache_gb)


def probe_from_states(rm, chosen: torch.Tensor, rejected: torch.Tensor, started: float | None = None,
                      losses: LossSettings | None = None) -> dict:
    """Fit `rm`'s value head to (chosen, rejected) reward-token states (N, H) under the trainer's
    score penalty (`losses`, default `LossSettings()`); returns what it found."""
    started = time.perf_counter() if started is None else started
    diff = chosen - rejected
    states = torch.stack([chosen, rejected], dim=1)  # (N, 2, H)
    scores = cross_validate(diff, states=states, losses=losses)
    l2 = max(scores, key=lambda k: (scores[k], k))  # ties: the stronger regularisation
    w = fit_linear_head(diff, l2, states=states, losses=losses)
    fitted = torch.cat([chosen, rejected]).double().matmul(w)
    scaled_by = 1.0
    limit = inside_limit(losses or LossSettings())
    if limit is not None and float(fitted.abs().max()) > limit:
        # the penalty is soft (weight 0.01, continued linearly past the bound): separable pairs can
        # still push scores out, so shrink w onto the range; the ranking of every pair is unchanged
        scaled_by = limit / float(fitted.abs().max())
        w, fitted = w * scaled_by, fitted * scaled_by
    # with LoRA the head is peft's ModulesToSaveWrapper, whose trained copy is modules_to_save["default"]
    copies = getattr(rm.value_head, "modules_to_save", None)
    head = (copies["default"] if copies is not None else rm.value_head).weight
    with torch.no_grad():
        head.copy_(w.to(head.dtype).view_as(head))
    margin = diff.double() @ w
    return {"pairs": len(chosen), "l2": l2, "cv_accuracy": {str(k): round(v, 4) for k, v in scores.items()},
            "train_accuracy": round(float((margin > 0).double().mean()), 4),
            "score_std": round(float(fitted.std()), 4),
            "score_range": [round(float(fitted.min()), 4), round(float(fitted.max()), 4)],
            "scaled_by": round(scaled_by, 4),
            "seconds": round(time.perf_counter() - started, 1)}
