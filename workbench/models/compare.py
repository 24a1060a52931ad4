"""`workbench rm compare A B`: how two reward models agree on the responses both have scored.

- **Overall**: Spearman's rho and Kendall's tau-b (ties handled as scipy does) over all common responses.
- **Per prompt**: the same two within each prompt's replies; the median over prompts where they
  are defined (at least two replies, not all tied by either model).
- **Same-prompt pairs**: of every two replies to one prompt that both models order strictly, the
  share they order the same way; pairs that either model ties are counted apart.
- **Length**: each model's Pearson correlation of score with reply length in characters (as
  the Overview tab shows it).
- **Most-disagreeing pairs**: same-prompt pairs the models order oppositely, ranked by how
  firmly both do: min(|dz_A|, |dz_B|), with z each model's score standardised over the common
  responses. Each comes with both texts and all four scores, and the prompt id to open in Browse.

Everything but the overall coefficients (scipy) is computed in vectorised numpy/pandas over all
pairs of replies within a prompt (N(N-1)/2 per prompt), not prompt by prompt: `bench/rm_compare.py`
measures it against a scipy call per prompt.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store
from workbench.store import compare as sql
from workbench.store import queries

TOP_PAIRS = 10


def _finite(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def same_prompt_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (i, j), i < j, of every two rows in the same group; rows sorted by group."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    first, second = [], []
    for size in np.unique(sizes[sizes >= 2]):
        i, j = np.triu_indices(size, 1)
        base = starts[sizes == size][:, None]                  # (groups of this size, 1)
        first.append((base + i).ravel())
        second.append((base + j).ravel())
    if not first:
        return np.empty(0, int), np.empty(0, int)
    return np.concatenate(first), np.concatenate(second)


def _per_group_pearson(groups: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    def total(values):
        return np.bincount(groups, weights=values, minlength=n_groups)

    n = np.bincount(groups, minlength=n_groups).astype(float)
    sx, sy, sxx, syy, sxy = total(x), total(y), total(x * x), total(y * y), total(x * y)
    denominator = np.sqrt(np.clip(n * sxx - sx * sx, 0, None) * np.clip(n * syy - sy * sy, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (n * sxy - sx * sy) / denominator
    r[(n < 2) | (denominator <= 1e-12 * np.maximum(n * n, 1))] = np.nan
    return np.clip(r, -1, 1)


def compare_scores(prompt_ids, response_ids, n_chars, a, b, top: int = TOP_PAIRS) -> dict:
    """The comparison (see the module docstring) of two score arrays over the same responses."""
    from scipy import stats

    frame = pd.DataFrame({"prompt": prompt_ids, "response": response_ids, "chars": n_chars, "a": a, "b": b})
    frame = frame.sort_values(["prompt", "response"], kind="stable").reset_index(drop=True)
    if len(frame) < 2:
        raise WorkbenchError("the two reward models have fewer than two responses scored in common")
    groups = pd.factorize(frame["prompt"])[0]
    n_groups = int(groups.max()) + 1
    a, b, chars = frame["a"].to_numpy(float), frame["b"].to_numpy(float), frame["chars"].to_numpy(float)

    i, j = same_prompt_pairs(groups)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    strict = (da != 0) & (db != 0)
    pair_groups = groups[i]
    concordance = np.bincount(pair_groups, weights=da * db, minlength=n_groups)
    n0 = np.bincount(pair_groups, minlength=n_groups)
    ties_a = np.bincount(pair_groups, weights=da == 0, minlength=n_groups)
    ties_b = np.bincount(pair_groups, weights=db == 0, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        kendall = concordance / np.sqrt((n0 - ties_a) * (n0 - ties_b))
    rank_a = frame.groupby(groups)["a"].rank(method="average").to_numpy()
    rank_b = frame.groupby(groups)["b"].rank(method="average").to_numpy()
    spearman = _per_group_pearson(groups, rank_a, rank_b, n_groups)
    kendall, spearman = kendall[np.isfinite(kendall)], spearman[np.isfinite(spearman)]

    def z(values):
        spread = values.std()
        return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)

    za, zb = z(a), z(b)
    opposite = np.flatnonzero(da * db < 0)
    firmness = np.minimum(np.abs(za[i] - za[j]), np.abs(zb[i] - zb[j]))[opposite]
    order = opposite[np.lexsort((frame["response"].to_numpy()[j][opposite], frame["response"].to_numpy()[i][opposite],
                                 -firmness))][:top]
    disagreements = []
    for k in order:
        x, y = (i[k], j[k]) if da[k] > 0 else (j[k], i[k])   # x: the reply A prefers
        disagreements.append({
            "prompt_id": frame["prompt"][x], "a_prefers": frame["response"][x], "b_prefers": frame["response"][y],
            "a_scores": [float(a[x]), float(a[y])], "b_scores": [float(b[x]), float(b[y])],
            "firmness": float(min(abs(za[x] - za[y]), abs(zb[x] - zb[y])))})

    def length_correlation(values):
        return _finite(np.corrcoef(values, chars)[0, 1]) if values.std() > 0 and chars.std() > 0 else None

    return {
        "responses": len(frame), "prompts": int(n_groups),
        "spearman": _finite(stats.spearmanr(a, b).statistic) if a.std() > 0 and b.std() > 0 else None,
        "kendall_tau": _finite(stats.kendalltau(a, b).statistic) if a.std() > 0 and b.std() > 0 else None,
        "per_prompt": {"spearman_median": _finite(np.median(spearman)) if len(spearman) else None,
                       "kendall_tau_median": _finite(np.median(kendall)) if len(kendall) else None,
                       "prompts_spearman": len(spearman), "prompts_kendall": len(kendall)},
        "pairs": {"same_prompt_pairs": len(i), "ordered_by_both": int(strict.sum()),
                  "same_order": int((strict & (da == db)).sum()),
                  "agreement": _finite((da == db)[strict].mean()) if strict.any() else None,
                  "tied_by_a": int((da == 0).sum()), "tied_by_b": int((db == 0).sum())},
        "length_correlation": {"a": length_correlation(a), "b": length_correlation(b)},
        "disagreements": disagreements,
    }


def compare_reward_models(store: Store, a: str, b: str, *, source: str | None = None, top: int = TOP_PAIRS) -> dict:
    """Compare two reward models over the responses both scored (in `source`, if given)."""
    if top < 0:
        raise WorkbenchError("--top must be >= 0")
    model_a, model_b = resolve_reward_model(store, a), resolve_reward_model(store, b)
    if model_a.rm_id == model_b.rm_id:
        raise WorkbenchError(f"{model_a.label} is compared with itself: give two different reward models")
    with store.connect() as con:
        common = sql.common_scores(con, model_a.rm_id, model_b.rm_id, source).to_pydict()
    if len(common["response_id"]) < 2:
        raise WorkbenchError(f"{model_a.label} and {model_b.label} have scored fewer than two of the same "
                             "responses: score the store with both (`workbench score --rm NAME`)")
    result = compare_scores(common["prompt_id"], common["response_id"], common["n_chars"], common["score_a"],
                            common["score_b"], top=top)
    found = result["disagreements"]
    with store.connect() as con:
        responses, prompts = queries.texts_by_id(con, [d[k] for d in found for k in ("a_prefers", "b_prefers")],
                                               [d["prompt_id"] for d in found])
    for d in found:
        d.update(prompt=prompts[d["prompt_id"]], a_prefers_text=responses[d["a_prefers"]],
                 b_prefers_text=responses[d["b_prefers"]])
    return {"a": model_a.label, "b": model_b.label, "source": source, **result}


SUMMARY_ROWS = [("Spearman rho, all responses", ("spearman",)), ("Kendall tau-b, all responses", ("kendall_tau",)),
                ("Spearman rho, per prompt (median)", ("per_prompt", "spearman_median")),
                ("Kendall tau-b, per prompt (median)", ("per_prompt", "kendall_tau_median")),
                ("Same-prompt pairs ordered the same way", ("pairs", "agreement"))]


def summary_rows(result: dict) -> list[tuple[str, float | int | None]]:
    """The comparison's numbers as (measure, value) rows: statistics rounded to 4 decimals, counts
    as integers."""
    def get(path):
        value = result
        for key in path:
            value = value[key]
        return value

    rows = [(name, get(path)) for name, path in SUMMARY_ROWS]
    rows += [(f"Length correlation of {result[k]}", result["length_correlation"][k]) for k in ("a", "b")]
    rows += [("Responses scored by both", result["responses"]), ("Prompts", result["prompts"]),
             ("Same-prompt pairs ordered by both", result["pairs"]["ordered_by_both"])]
    return [(name, None if v is None else int(v) if isinstance(v, (int, np.integer)) else round(float(v), 4))
            for name, v in rows]


def summary_table(result: dict) -> pd.DataFrame:
    """`summary_rows` as a table for the app; object dtype keeps the counts integers (a float
    column would show 306 as 306.0)."""
    return pd.DataFrame(summary_rows(result), columns=["measure", "value"], dtype=object)


DISAGREEMENT_COLUMNS = ["prompt", "reply A prefers", "reply B prefers", "A scores", "B scores", "firmness", "prompt_id"]


def disagreement_table(result: dict, width: int = 160) -> pd.DataFrame:
    """The most-disagreeing pairs, texts shortened, with the prompt id to open in Browse."""
    from workbench.curate.browse import shorten

    def pair(scores):
        return f"{scores[0]:.4g} vs {scores[1]:.4g}"

    rows = [[shorten(d["prompt"], width), shorten(d["a_prefers_text"], width), shorten(d["b_prefers_text"], width),
             pair(d["a_scores"]), pair(d["b_scores"]), round(d["firmness"], 3), d["prompt_id"]]
            for d in result["disagreements"]]
    return pd.DataFrame(rows, columns=DISAGREEMENT_COLUMNS)
