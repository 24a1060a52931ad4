"""Pairwise accuracy of a reward model on labelled preference pairs, beside length baselines.

Length baselines compare reply lengths in characters (tokenizer-independent, so the numbers
are comparable across backbones): "longer wins" and "shorter wins". In hh-rlhf harmless the
shorter reply is preferred 55% of the time, so a reward model must beat both to mean anything.
Ties count half everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.data import PreferencePair, ScoringItem
from engine.errors import EngineError


def pair_outcomes(chosen: Sequence[float], rejected: Sequence[float]) -> list[float]:
    """Per pair: 1 when chosen > rejected, 0.5 on a tie, else 0."""
    if len(chosen) != len(rejected) or not chosen:
        raise EngineError("pairwise accuracy needs the same, non-zero number of chosen and rejected values")
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)]


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Fraction of pairs with chosen > rejected, ties counting half."""
    return sum(pair_outcomes(chosen, rejected)) / len(chosen)


def evaluate_pairs(scorer, pairs: Sequence[PreferencePair], progress: Callable[[int, int], None] | None = None,
                   **score_kwargs) -> dict:
    """Score both replies of every pair; return accuracy, mean margin and the length baselines.

    `scorer` is an `engine.scoring.Scorer` (anything with `.score(items, ...)`).
    """
    if not pairs:
        raise EngineError("no pairs to evaluate")
    items = [ScoringItem(p.prompt, reply) for p in pairs for reply in (p.chosen, p.rejected)]
    scores = scorer.score(items, progress=progress, **score_kwargs)
    chosen, rejected = scores[0::2], scores[1::2]
    chosen_len = [len(p.chosen) for p in pairs]
    rejected_len = [len(p.rejected) for p in pairs]
    return {
        "n": len(pairs),
        "accuracy": pairwise_accuracy(chosen, rejected),
        "mean_margin": sum(c - r for c, r in zip(chosen, rejected)) / len(pairs),
        "length_baseline": pairwise_accuracy(chosen_len, rejected_len),  # longer reply (characters) wins
        "shorter_baseline": pairwise_accuracy([-n for n in chosen_len], [-n for n in rejected_len]),
        "chosen_scores": chosen,
        "rejected_scores": rejected,
    }
