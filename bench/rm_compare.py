"""Benchmark: `workbench rm compare`'s statistics (vectorised over all same-prompt reply pairs)
vs. the straightforward way, a scipy call per prompt plus a Python loop over reply pairs.

Synthetic Best-of-N scores: PROMPTS x N replies, model B = model A + noise (ties included by
rounding). Both sides compute the per-prompt Spearman and Kendall medians and the share of
same-prompt pairs ordered alike; the script checks they agree. Prints one JSON object.

    python bench/rm_compare.py                     # 20,000 prompts x 8
    python bench/rm_compare.py --prompts 2000 --n 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.models.compare import compare_scores  # noqa: E402


def baseline(prompts, a, b) -> dict:
    from scipy import stats

    rhos, taus, same, both = [], [], 0, 0
    starts = np.flatnonzero(np.r_[True, prompts[1:] != prompts[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(prompts)]):
        x, y = a[start:end], b[start:end]
        if end - start >= 2 and x.std() > 0 and y.std() > 0:
            rhos.append(stats.spearmanr(x, y).statistic)
            taus.append(stats.kendalltau(x, y).statistic)
        for i, j in itertools.combinations(range(end - start), 2):
            if x[i] != x[j] and y[i] != y[j]:
                both += 1
                same += (x[i] > x[j]) == (y[i] > y[j])
    return {"spearman_median": float(np.median(rhos)), "kendall_tau_median": float(np.median(taus)),
            "agreement": same / both}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=20_000)
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    import scipy.stats  # noqa: F401  (imported before either side is timed)

    rng = np.random.default_rng(0)
    size = args.prompts * args.n
    prompts = np.repeat([f"p{i:07d}" for i in range(args.prompts)], args.n)
    responses = np.array([f"{p}-{j}" for p, j in zip(prompts, np.tile(np.arange(args.n), args.prompts))])
    a = np.round(rng.normal(size=size), 1)
    b = np.round(a + rng.normal(size=size), 1)
    chars = rng.integers(10, 2000, size)

    started = time.perf_counter()
    result = compare_scores(prompts, responses, chars, a, b)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    reference = baseline(prompts, a, b)
    theirs = time.perf_counter() - started
    mine = {"spearman_median": result["per_prompt"]["spearman_median"],
            "kendall_tau_median": result["per_prompt"]["kendall_tau_median"], "agreement": result["pairs"]["agreement"]}
    print(json.dumps({
        "responses": size, "prompts": args.prompts, "n": args.n,
        "workbench_s": round(ours, 2), "baseline_per_prompt_scipy_s": round(theirs, 2),
        "speedup": round(theirs / ours, 1),
        "max_abs_difference": max(abs(mine[k] - reference[k]) for k in mine),
        "workbench_also_computes": "overall Spearman/Kendall, length correlations, most-disagreeing pairs",
    }, indent=2))


if __name__ == "__main__":
    main()
