"""What the store holds at a glance: counts, score and margin distributions, length bias, ties.

Each function opens the store for one short read and returns plain data (dicts and pandas
DataFrames) that the app's Overview tab plots as is.
"""

from __future__ import annotations

import pandas as pd

from workbench.store import Store, queries

HISTOGRAM_BINS = 30
SCATTER_POINTS = 2000
TIES_SHOWN = 20
TIE_COLUMNS = ["prompt", "source", "replies", "score", "prompt_id"]


def overview_counts(store: Store) -> dict:
    """Counts of prompts, responses, scores, pairs and reward models."""
    with store.connect() as con:
        return queries.table_counts(con, queries.DATA_TABLES)


def reward_model_choices(store: Store, scored_only: bool = False, with_weights: bool = False) -> list[tuple[str, str]]:
    """(description, NAME@VERSION) of the store's reward models, for dropdowns."""
    with store.connect() as con:
        models, counts = queries.list_reward_models(con), queries.score_counts(con)
    choices = []
    for m in models:
        n_scores = counts.get(m.rm_id, 0)
        if (scored_only and not n_scores) or (with_weights and not m.has_weights):
            continue
        kind = "weights" if m.has_weights else "imported scores"
        choices.append((f"{m.label} ({n_scores:,} scores, {kind})", m.label))
    return choices


def _histogram_frame(low, high, counts, bins: int, column: str) -> pd.DataFrame:
    if low is None:
        return pd.DataFrame({column: pd.Series(dtype=float), "count": pd.Series(dtype=int)})
    width = (high - low) / bins if high > low else 1.0
    by_bin = dict(counts)
    # Bin centres as the x value: one bar per bin, empty bins included so gaps show.
    n_bins = bins if high > low else 1
    return pd.DataFrame({column: [round(low + (b + 0.5) * width, 4) for b in range(n_bins)],
                         "count": [by_bin.get(b, 0) for b in range(n_bins)]})


def _score_histogram(con, rm_id: str, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    return _histogram_frame(*queries.histogram(con, "scores", rm_id, bins), bins, "score")


def _margin_histogram(con, rm_id: str, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    return _histogram_frame(*queries.histogram(con, "margins", rm_id, bins), bins, "margin")


def _length_bias(con, rm_id: str, points: int = SCATTER_POINTS) -> dict:
    r, n = queries.length_score_correlation(con, rm_id)
    sample = queries.length_score_sample(con, rm_id, points).to_pandas()
    sample = sample.rename(columns={"n_chars": "chars"}).sort_values(["chars", "score"], ignore_index=True)
    return {"points": sample, "pearson_r": None if r is None else float(r), "n": int(n)}


def _all_tie_prompts(con, rm_id: str, limit: int = TIES_SHOWN) -> dict:
    total, found = queries.all_tie_prompts(con, rm_id, limit)
    frame = pd.DataFrame(found, columns=["text", "source", "n", "score", "prompt_id"])
    return {"total": total, "prompts": frame.set_axis(TIE_COLUMNS, axis=1)}


def _for_model(store: Store, rm: str, view, **kwargs):
    with store.connect() as con:
        return view(con, queries.rm_id_for(con, rm), **kwargs)


def score_histogram(store: Store, rm: str, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """Columns score (bin centre), count: the distribution of one reward model's scores.

    `rm` (here and below): an id, NAME or NAME@VERSION."""
    return _for_model(store, rm, _score_histogram, bins=bins)


def margin_histogram(store: Store, rm: str, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """Columns margin (bin centre), count: the margins of the pairs this reward model labelled."""
    return _for_model(store, rm, _margin_histogram, bins=bins)


def length_bias(store: Store, rm: str, points: int = SCATTER_POINTS) -> dict:
    """Score against reply length: a sample of points and the correlation over every score.

    Returns {"points": DataFrame(chars, score), "pearson_r": float | None, "n": int}. A reward
    model that mostly rewards length shows r far from 0 (|r| > 0.3 is worth a look).
    """
    return _for_model(store, rm, _length_bias, points=points)


def all_tie_prompts(store: Store, rm: str, limit: int = TIES_SHOWN) -> dict:
    """Prompts whose scored replies all got the same score (they can give no pair).

    Returns {"total": int, "prompts": DataFrame(prompt, source, replies, score, prompt_id)}.
    """
    return _for_model(store, rm, _all_tie_prompts, limit=limit)


def model_report(store: Store, rm: str) -> dict:
    """Everything the Overview shows for one reward model, from one store connection:
    {"scores": score_histogram, "margins": margin_histogram, "length": length_bias, "ties": all_tie_prompts}."""
    with store.connect() as con:
        rm_id = queries.rm_id_for(con, rm)
        return {"scores": _score_histogram(con, rm_id), "margins": _margin_histogram(con, rm_id),
                "length": _length_bias(con, rm_id), "ties": _all_tie_prompts(con, rm_id)}
