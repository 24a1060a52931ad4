"""`workbench ablate`: the measured value of a pair filter for DPO.

From the same start (a round's starting policy and its samples, scored by its labeler), DPO is
run twice with the same hyper-parameters, seed and number of pairs:
  (a) curated: the pairs a `PairFilter` selects (e.g. best-vs-worst with --min-margin),
  (b) baseline: `random-pair`, one random pair of the same replies per prompt (chosen = the
      higher score, the RM's label but no curation), or `unfiltered`, random pairs from every
      ordered pair of the same replies;
the larger set is subsampled (seeded) to the size of the smaller. Both policies are evaluated
against the start and against each other on the rounds' held-out prompts: a table with CIs.

Every step is kept on disk or in the store (pair files under `out_root`, DPO runs that resume,
evaluation replies and scores in the store), so a rerun after a kill continues.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.data import SamplingParams
from engine.dpo import DPOTrainConfig
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.curate.pair_filter import PairFilter
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries

BASELINES = ("random-pair", "unfiltered")


@dataclass
class AblationReport:
    round: int
    start: str
    curated_filter: dict
    baseline: str
    pairs_each: int
    curated_available: int
    baseline_available: int
    policies: dict
    comparisons: list

    def as_dict(self) -> dict:
        return asdict(self)


def ablate(store: Store, round_number: int, curated: PairFilter, *, baseline: str = "random-pair",
           dpo_settings: dict | None = None, out_root: str | Path = "runs/ablation", heldout_rm: str | None = None,
           eval_params: SamplingParams | None = None, seed: int = 0, progress: bool = True) -> AblationReport:
    """Train curated and baseline policies from round `round_number`'s start and compare them."""
    from workbench.dpo.dpo_training import train_policy
    from workbench.dpo.policy_eval import evaluate_policies

    if baseline not in BASELINES:
        raise WorkbenchError(f"--baseline must be one of {', '.join(BASELINES)}")
    start, run, rm, strategy, eval_ids = _round_start(store, round_number)
    DPOTrainConfig(**(dpo_settings or {}))
    # the round's own pair strategy unless another is asked for: never the baseline's all-above-margin pairs
    curated = PairFilter(**{**curated.as_dict(), "rm": rm, "generation_run": run,
                            "strategy": curated.strategy or strategy})
    tag = ids.digest(ids.canonical_json({"filter": curated.as_dict(), "baseline": baseline, "seed": seed,
                                         "dpo": dpo_settings or {}}))[:8]
    out = Path(out_root) / f"round-{round_number}-{tag}"
    files, counts = _pair_files(store, out, curated, rm, run, baseline, seed, progress)
    names = {}
    for arm in ("curated", "baseline"):
        config = DPOTrainConfig(**{**(dpo_settings or {}), "policy": start, "reference": None,
                                   "out_dir": str(out / arm), "seed": (dpo_settings or {}).get("seed", seed)})
        names[arm] = train_policy(store, config, f"ablate-{round_number}-{tag}-{arm}", pairs_file=files[arm],
                                  progress=progress).name
    selection = PromptSelection(prompt_ids=eval_ids)
    comparisons = []
    for a, b in ((names["curated"], start), (names["baseline"], start), (names["curated"], names["baseline"])):
        report = evaluate_policies(store, a, b, rm, heldout_rm=heldout_rm, selection=selection, params=eval_params,
                                   progress=progress)
        comparisons.append(report.as_dict())
    return AblationReport(round_number, start, curated.as_dict(), baseline, counts["each"], counts["curated"],
                          counts["baseline"], names, comparisons)


def _round_start(store: Store, number: int) -> tuple[str, str, str, str, list[str]]:
    with store.connect() as con:
        found = queries.get_round(con, number)
        if found is None or not found.get("generation_run"):
            raise WorkbenchError(f"round {number} has no scored samples yet: run `workbench round` first")
        eval_ids = queries.round_prompt_ids(con, 1, "eval")
    config = found["config"]["round"]
    return found["policy_in"], found["generation_run"], config["rm"], config["strategy"], eval_ids


def _pair_files(store: Store, out: Path, curated: PairFilter, rm: str, run: str, baseline: str, seed: int,
                progress: bool) -> tuple[dict, dict]:
    """Write curated.jsonl and baseline.jsonl with the same number of pairs (kept once written)."""
    from workbench.exports.export import export_pairs
    from workbench.curate.pairs import build_pairs

    files = {"curated": out / "curated.jsonl", "baseline": out / "baseline.jsonl"}
    summary = out / "pairs.json"
    if summary.is_file() and all(f.is_file() for f in files.values()):
        return files, json.loads(summary.read_text())
    out.mkdir(parents=True, exist_ok=True)
    curated_rows = _export_rows(store, out / "curated-all.jsonl", curated, export_pairs)
    build_pairs(store, rm, "all-above-margin", generation_run=run, progress=progress)
    every = _export_rows(store, out / "every-pair.jsonl",
                         PairFilter(rm=rm, strategy="all-above-margin", generation_run=run), export_pairs)
    rng = random.Random(seed)
    if baseline == "random-pair":
        by_prompt: dict[str, list[dict]] = {}
        for row in every:
            by_prompt.setdefault(row["prompt_id"], []).append(row)
        baseline_rows = [rng.choice(rows) for _, rows in sorted(by_prompt.items())]
    else:
        baseline_rows = list(every)
    each = min(len(curated_rows), len(baseline_rows))
    if each == 0:
        raise WorkbenchError(f"no pairs to ablate: the curated filter selects {len(curated_rows)}, the baseline "
                             f"{len(baseline_rows)}")
    for arm, rows in (("curated", curated_rows), ("baseline", baseline_rows)):
        chosen = sorted(rng.sample(range(len(rows)), each))
        _write_rows(files[arm], [rows[i] for i in chosen])
    counts = {"each": each, "curated": len(curated_rows), "baseline": len(baseline_rows)}
    summary.write_text(json.dumps(counts))
    return files, counts


def _export_rows(store: Store, path: Path, pair_filter: PairFilter, export_pairs) -> list[dict]:
    if not path.is_file():
        export_pairs(store, path, schema="trl", pair_filter=pair_filter, with_provenance=True)
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in ("prompt", "chosen", "rejected")}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def ablation_table(report: AblationReport) -> list[str]:
    """The report as a Markdown table."""
    lines = ["| comparison | win rate (training RM) [95% CI] | LC win rate [95% CI] | win rate (held-out RM) [95% CI]"
             " | mean tokens A / B |", "|---|---|---|---|---|"]
    for c in report.comparisons:
        h, o = c["training_rm"], c.get("heldout")
        held = f"{o['win_rate']:.3f} [{o['win_rate_ci'][0]:.3f}, {o['win_rate_ci'][1]:.3f}]" if o else "-"
        lines.append(f"| {c['policy_a']} vs {c['policy_b']} | {h['win_rate']:.3f} [{h['win_rate_ci'][0]:.3f}, "
                     f"{h['win_rate_ci'][1]:.3f}] | {h['lc_win_rate']:.3f} [{h['lc_win_rate_ci'][0]:.3f}, "
                     f"{h['lc_win_rate_ci'][1]:.3f}] | {held} | {h['mean_tokens_a']:.1f} / {h['mean_tokens_b']:.1f} |")
    return lines
