"""Which pairs each optimizer step takes, how many steps a run has, and the learning-rate schedule."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from engine.errors import EngineError
from engine.train_config import TrainConfig


def steps_per_epoch(n_pairs: int, pairs_per_step: int) -> int:
    """Whole steps in one pass over the pairs (a last partial step is dropped)."""
    return n_pairs // pairs_per_step


def total_steps(config: TrainConfig, n_pairs: int) -> int:
    """Optimizer steps of the run: `max_steps`, else `epochs` passes (at least one step)."""
    per_epoch = steps_per_epoch(n_pairs, config.pairs_per_step)
    if per_epoch == 0:
        raise EngineError(f"{n_pairs} training pairs cannot fill one step of {config.pairs_per_step}: "
                          "lower pairs_per_step or add pairs")
    return config.max_steps or max(1, math.ceil(config.epochs * per_epoch))


def step_pair_indices(n_pairs: int, pairs_per_step: int, seed: int, step: int) -> list[int]:
    """The pairs of one optimizer step: a seeded shuffle per epoch, cut into whole steps."""
    per_epoch = steps_per_epoch(n_pairs, pairs_per_step)
    epoch, k = divmod(step, per_epoch)
    order = list(range(n_pairs))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[k * pairs_per_step:(k + 1) * pairs_per_step]


def lr_lambda(config: TrainConfig, steps: int) -> Callable[[int], float]:
    """The learning-rate factor per step: linear warm-up, then cosine decay to `min_lr_ratio`."""
    warmup = int(config.warmup_ratio * steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return factor
