"""What the app's Rounds tab shows, read from the store: one row per round (policies, prompts,
pairs, sample rewards and lengths, win rate against the first policy with CIs, the export), the
sample-reward distribution of each round, and the ablation table."""

from __future__ import annotations

import numpy as np

from workbench.dpo.policies import lookup_policy
from workbench.models.reward_models import resolve_reward_model
from workbench.store import Store, queries


def _interval(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def round_rows(store: Store) -> list[dict]:
    """One dict per round for the table."""
    from workbench.dpo.rounds import list_rounds

    rows = []
    for r in list_rounds(store):
        scores = _round_scores(store, r)
        evaluation = r.get("evaluation") or {}
        h, o = evaluation.get("training_rm"), evaluation.get("heldout")
        rows.append({
            "round": r["round"], "status": r["status"], "phase": r["phase"], "policy in": r["policy_in"],
            "policy out": r["policy_out"] or "", "reference": r["reference"], "prompts": r["train_prompts"],
            "pairs": _pair_count(store, r),
            "mean reward": round(float(np.mean([s for s, _ in scores])), 3) if scores else None,
            "mean length (chars)": round(float(np.mean([c for _, c in scores])), 1) if scores else None,
            "win rate vs first": f"{h['win_rate']:.3f} {_interval(h['win_rate_ci'])}" if h else "",
            "LC win rate vs first": f"{h['lc_win_rate']:.3f} {_interval(h['lc_win_rate_ci'])}" if h else "",
            "held-out RM win rate": f"{o['win_rate']:.3f} {_interval(o['win_rate_ci'])}" if o else "",
            "reward hacking": "yes" if evaluation.get("reward_hacking") else "",
            "export": _export_path(store, r.get("export_hash")),
        })
    return rows


def reward_histogram(store: Store, bins: int = 20) -> list[dict]:
    """(round, reward, share of the round's samples) points: each round's sample-reward distribution
    on common bins, so the rounds overlay on one plot."""
    from workbench.dpo.rounds import list_rounds

    per_round = {r["round"]: [s for s, _ in _round_scores(store, r)] for r in list_rounds(store)}
    values = [s for scores in per_round.values() for s in scores]
    if not values:
        return []
    edges = np.linspace(min(values), max(values) + 1e-9, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    points = []
    for number, scores in per_round.items():
        if scores:
            counts, _ = np.histogram(scores, edges)
            points += [{"round": f"round {number}", "reward": float(c), "share": float(n / len(scores))}
                       for c, n in zip(centres, counts)]
    return points


def ablation_rows(store: Store) -> list[dict]:
    """The stored ablation comparisons: training-RM and held-out-RM win rates with CIs."""
    with store.connect() as con:
        reports = queries.ablation_reports(con)
    rows = []
    for row in reports:
        report = row["report"]
        h, o = report["training_rm"], report.get("heldout")
        rows.append({"comparison": f"{row['policy_a']} vs {row['policy_b']}", "prompts": report["prompts"],
                     "win rate": f"{h['win_rate']:.3f} {_interval(h['win_rate_ci'])}",
                     "LC win rate": f"{h['lc_win_rate']:.3f} {_interval(h['lc_win_rate_ci'])}",
                     "held-out RM win rate": f"{o['win_rate']:.3f} {_interval(o['win_rate_ci'])}" if o else "",
                     "mean tokens A / B": f"{h['mean_tokens_a']:.1f} / {h['mean_tokens_b']:.1f}"})
    return rows


def _round_scores(store: Store, r: dict) -> list[tuple[float, int]]:
    if not r.get("generation_run"):
        return []
    rm_id = resolve_reward_model(store, r["config"]["round"]["rm"]).rm_id
    with store.connect() as con:
        return queries.generation_scores(con, r["generation_run"], rm_id)


def _pair_count(store: Store, r: dict) -> int | None:
    policy = lookup_policy(store, r["policy_out"]) if r.get("policy_out") else None
    if policy is None:
        return None
    with store.connect() as con:
        return queries.run_summary(con, policy["run_id"]).get("pairs")


def _export_path(store: Store, export_hash: str | None) -> str:
    if not export_hash:
        return ""
    with store.connect() as con:
        return queries.export_path_by_hash(con, export_hash) or export_hash[:12]
