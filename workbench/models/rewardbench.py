"""`workbench rm eval --format rewardbench`: a reward model on RewardBench-style rows, scored the
way RewardBench scores it, so the numbers can be set beside published ones.

A row holds `prompt` (a string or a message list), `chosen` (a string, or a one-element list),
`rejected` (a string, or a list for best-of-k subsets) and `subset`; `id` is optional. A row
counts 1 when the chosen reply scores above every rejected one, 1/2 when it ties the best
rejected one, else 0.

Sections follow RewardBench's SUBSET_MAPPING (allenai/reward-bench, rewardbench/constants.py).
A section's score is the mean of its subsets' accuracies weighted by their row counts, as
RewardBench's `calculate_scores_per_section` does with its EXAMPLE_COUNTS (on the full filtered
set those counts are the row counts), except in *reasoning*: RewardBench counts math-prm as 984
rows instead of its 447 so that math weighs as much as the six HumanEvalPack code subsets
(6 x 164), so here math-prm weighs as much as all hep-* rows present. The score is the mean of the
sections present. Subsets outside the map are reported but in no section.

Intervals (95%): per subset, the Wilson score interval (ties count half a hit); sections and the
score, a percentile bootstrap that resamples rows within each subset (2,000 draws, seed 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import InputError, WorkbenchError
from workbench.ingest.readers import iter_records

SECTIONS = {
    "chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "chat-hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
SECTION_OF = {subset: section for section, subsets in SECTIONS.items() for subset in subsets}
MATH_SUBSET = "math-prm"
CODE_PREFIX = "hep-"
BOOTSTRAP_DRAWS = 2000
INTERVALS = ("subsets: Wilson score interval; sections and score: percentile bootstrap over rows "
             f"resampled within each subset ({BOOTSTRAP_DRAWS} draws, seed 0)")


@dataclass(frozen=True)
class RewardBenchRow:
    prompt: list[dict]
    chosen: str
    rejected: tuple[str, ...]
    subset: str
    id: str


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError("expected a non-empty string", field=field)
    return value


def _prompt(value) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": _text(value, "prompt")}]
    if not isinstance(value, list) or not value:
        raise InputError("expected a string or a non-empty message list", field="prompt")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise InputError("expected a message with role system, user or assistant", field=f"prompt[{i}]")
        _text(message.get("content"), f"prompt[{i}].content")
    if value[-1]["role"] == "assistant":
        raise InputError("the prompt must not end with an assistant message", field="prompt")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def parse_row(value, default_id: str) -> RewardBenchRow:
    """One RewardBench record as a row; raises InputError naming the field."""
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}")
    chosen = value.get("chosen")
    if isinstance(chosen, list):
        if len(chosen) != 1:
            raise InputError("a list of several chosen replies is not supported: give one", field="chosen")
        chosen = chosen[0]
    rejected = value.get("rejected")
    rejected = rejected if isinstance(rejected, list) else [rejected]
    if not rejected:
        raise InputError("empty list", field="rejected")
    subset = _text(value.get("subset"), "subset")
    return RewardBenchRow(_prompt(value.get("prompt")), _text(chosen, "chosen"),
                          tuple(_text(r, f"rejected[{i}]") for i, r in enumerate(rejected)), subset,
                          str(value.get("id", default_id)))


def read_rewardbench(paths: Sequence[str | Path], skip_invalid: bool = False) -> tuple[list[RewardBenchRow], int]:
    """(rows, skipped) from RewardBench-style files (any file type `workbench import` reads)."""
    rows, skipped = [], 0
    for path in paths:
        for record in iter_records(path):
            try:
                if isinstance(record, InputError):
                    raise record
                rows.append(parse_row(record.value, f"{Path(record.file).name}:{record.line}"))
            except InputError as error:
                located = error if error.file else error.located(record.file, record.line, record.unit)
                if not skip_invalid:
                    raise InputError(located.reason + " (pass --skip-invalid to leave such rows out)",
                                     file=located.file, line=located.line, field=located.field,
                                     unit=located.unit) from None
                skipped += 1
    if not rows:
        raise WorkbenchError("no RewardBench rows to evaluate")
    return rows, skipped


def row_outcome(chosen: float, rejected: Sequence[float]) -> float:
    """1 when chosen beats every rejected reply, 0.5 when it ties the best of them, else 0."""
    best = max(rejected)
    return 1.0 if chosen > best else 0.5 if chosen == best else 0.0


def wilson_interval(hits: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion (hits may be fractional: ties count half)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def section_weights(counts: dict[str, int]) -> dict[str, float]:
    """Weight of each mapped subset present, within its section (see the module docstring)."""
    code = sum(n for s, n in counts.items() if s.startswith(CODE_PREFIX) and s in SECTION_OF)
    return {s: float(code if s == MATH_SUBSET and code else n) for s, n in counts.items() if s in SECTION_OF}


def _aggregate(accuracy: dict[str, np.ndarray | float], weights: dict[str, float]) -> tuple[dict, object]:
    """Section scores and the overall score from per-subset accuracies (scalars or bootstrap arrays)."""
    sections = {}
    for section, subsets in SECTIONS.items():
        present = [s for s in subsets if s in weights]
        if present:
            total = sum(weights[s] for s in present)
            sections[section] = sum(accuracy[s] * weights[s] for s in present) / total
    overall = sum(sections.values()) / len(sections) if sections else None
    return sections, overall


def rewardbench_report(rows: Sequence[RewardBenchRow], outcomes: Sequence[float], seed: int = 0) -> dict:
    """Accuracy per subset, per section and overall, each with its 95% interval."""
    by_subset: dict[str, list[float]] = {}
    for row, outcome in zip(rows, outcomes, strict=True):
        by_subset.setdefault(row.subset, []).append(outcome)
    counts = {s: len(v) for s, v in by_subset.items()}
    accuracy = {s: float(np.mean(v)) for s, v in by_subset.items()}
    weights = section_weights(counts)
    sections, overall = _aggregate(accuracy, weights)

    rng = np.random.default_rng(seed)
    draws = {}
    for subset in sorted(weights):  # sorted: the same draws whatever the file order
        values = np.asarray(by_subset[subset])
        draws[subset] = values[rng.integers(0, len(values), size=(BOOTSTRAP_DRAWS, len(values)))].mean(axis=1)
    boot_sections, boot_overall = _aggregate(draws, weights)

    def interval(samples) -> list[float]:
        return [float(q) for q in np.percentile(samples, [2.5, 97.5])]

    subsets = {s: {"section": SECTION_OF.get(s), "n": counts[s], "accuracy": accuracy[s],
                   "ties": sum(1 for o in by_subset[s] if o == 0.5),
                   "ci95": wilson_interval(sum(by_subset[s]), counts[s])} for s in sorted(by_subset)}
    return {
        "n": len(rows),
        "score": None if overall is None else {"value": overall, "ci95": interval(boot_overall)},
        "sections": {name: {"accuracy": value, "ci95": interval(boot_sections[name]),
                            "n": sum(counts[s] for s in SECTIONS[name] if s in counts),
                            "weights": {s: weights[s] for s in SECTIONS[name] if s in weights}}
                     for name, value in sections.items()},
        "subsets": subsets,
        "missing_sections": [s for s in SECTIONS if s not in sections],
        "unmapped_subsets": sorted(s for s in by_subset if s not in SECTION_OF),
        "intervals": INTERVALS,
    }


def score_rows(scorer, rows: Sequence[RewardBenchRow], progress=None) -> list[float]:
    """Score every row's replies with one batched `scorer.score` call; the outcome of each row."""
    from engine.data import ScoringItem

    items = [ScoringItem(row.prompt, reply) for row in rows for reply in (row.chosen, *row.rejected)]
    scores = scorer.score(items, progress=progress)
    outcomes, at = [], 0
    for row in rows:
        outcomes.append(row_outcome(scores[at], scores[at + 1: at + 1 + len(row.rejected)]))
        at += 1 + len(row.rejected)
    return outcomes


def format_report(report: dict) -> str:
    """The report as a few aligned lines for the terminal."""
    def line(name: str, value: float, ci: list[float], n: int) -> str:
        return f"{name:<24}{value:>8.4f}  [{ci[0]:.3f}, {ci[1]:.3f}]  n={n}"

    precision = f" ({report['precision']})" if "precision" in report else ""
    lines = [f"RewardBench-style evaluation of {report['rm']}{precision} on {report['n']} rows"]
    if report["score"]:
        lines.append(line("score (mean of sections)", report["score"]["value"], report["score"]["ci95"], report["n"]))
    for name, section in report["sections"].items():
        lines.append(line(f"  {name}", section["accuracy"], section["ci95"], section["n"]))
    for name, subset in report["subsets"].items():
        lines.append(line(f"    {name}", subset["accuracy"], subset["ci95"], subset["n"]))
    if report["missing_sections"]:
        lines.append(f"no rows for: {', '.join(report['missing_sections'])} (the score covers the others)")
    if report["unmapped_subsets"]:
        lines.append(f"in no section: {', '.join(report['unmapped_subsets'])}")
    lines.append(f"95% intervals: {report['intervals']}")
    return "\n".join(lines)
