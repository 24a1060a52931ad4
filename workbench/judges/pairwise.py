"""`workbench judge pairs` and `judge all-pairs`: a pairwise judge over stored pairs, or over every two
replies of each selected prompt (capped), into the store.

Each pair is shown in both orders (A/B and B/A). Per order the judge gives P(a better), a the reply
with the smaller id; the pair's verdict is their mean (`combine_orders`), so swapping the two
replies gives exactly the complementary probability, and it is position-consistent when both
orders pick the same winner. Verdicts land in `judge_pair_verdicts`; the judge's scores, in `scores`,
are derived per prompt from all its verdicts there (`bradley_terry_scores`): for a prompt judged on
one pair they are +-logit(p)/2, so the score margin is the verdict's log-odds and `pairs build --rm
JUDGE` picks the judge's winner. Work goes in chunks of one engine batch, each committed with its
prompts' scores; a rerun skips the pairs already judged (a kill loses at most one chunk).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from engine.progress import progress_bar
from workbench import ids
from workbench.curate.pair_filter import PairFilter
from workbench.generate.selection import PromptSelection
from workbench.judges.backends import PairItem, Verdict, labels_for
from workbench.judges.labeler import judge_config, register_judge
from workbench.judges.templates import PAIRWISE, JudgeTemplate, JudgeTemplateError
from workbench.store import Store, queries
from workbench.store.runs import recorded_run

EDGE = 1e-4      # verdicts are clipped to [EDGE, 1 - EDGE] before their log-odds: a certain verdict stays finite
RIDGE = 1e-6     # keeps Bradley-Terry scores finite on prompts whose judged pairs do not connect every reply
ANSWER_CHARS = 200


@dataclass
class JudgeResult:
    run_id: str
    judge: str            # NAME@VERSION of the judge's labeler
    rm_id: str
    mode: str
    to_judge: int         # pairs (or replies) selected that it had not judged before this run
    judged: int
    unparseable: int      # pairs (or replies) with an answer that is not a label: stored without a verdict
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def combine_orders(first: float | None, second: float | None) -> tuple[float | None, bool | None]:
    """(P(a better) over both orders, whether both orders pick the same winner); None where an order
    has no verdict (and for consistency also when an order is exactly even)."""
    if first is None or second is None:
        return None, None
    consistent = None if 0.5 in (first, second) else (first > 0.5) == (second > 0.5)
    return (first + second) / 2, consistent


def bradley_terry_scores(verdicts: list[tuple[str, str, float]]) -> dict[str, float]:
    """Scores s (mean 0) with sigmoid(s_a - s_b) closest to each verdict P(a better) in cross-entropy.

    One verdict: s_a = -s_b = logit(p)/2 exactly. Several (a prompt with more replies): the
    Bradley-Terry fit, which reproduces the verdicts when they agree with some ranking."""
    def clip(p: float) -> float:
        return min(max(p, EDGE), 1 - EDGE)

    if len(verdicts) == 1:
        a, b, p = verdicts[0]
        half = math.log(clip(p) / (1 - clip(p))) / 2
        return {a: half, b: -half}
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    replies = sorted({r for a, b, _ in verdicts for r in (a, b)})
    index = {r: k for k, r in enumerate(replies)}
    first = np.array([index[a] for a, _, _ in verdicts])
    second = np.array([index[b] for _, b, _ in verdicts])
    target = np.array([clip(p) for _, _, p in verdicts])

    def loss(s):
        d = s[first] - s[second]                                  # (pairs,)
        value = -(target * log_expit(d) + (1 - target) * log_expit(-d)).sum() + RIDGE / 2 * (s ** 2).sum()
        slope = expit(d) - target
        grad = np.bincount(first, slope, len(s)) - np.bincount(second, slope, len(s)) + RIDGE * s
        return value, grad

    fitted = minimize(loss, np.zeros(len(replies)), jac=True, method="L-BFGS-B", options={"gtol": 1e-10}).x
    fitted -= fitted.mean()
    return {r: float(fitted[index[r]]) for r in replies}


def capped_pairs(replies: list[str], cap: int | None) -> list[tuple[str, str]]:
    """Every two of a prompt's replies (a < b); past `cap`, a fixed pseudo-random choice (by the pair's
    hash), so a rerun with the same cap picks the same pairs."""
    pairs = list(itertools.combinations(sorted(replies), 2))
    if cap is not None and len(pairs) > cap:
        pairs = sorted(sorted(pairs, key=lambda p: ids.digest("pair", *p))[:cap])
    return pairs


def judge_stored_pairs(store: Store, judge, template: JudgeTemplate, *, pair_filter: PairFilter | None = None,
                       name: str | None = None, progress: bool = True) -> JudgeResult:
    """Judge the stored pairs the filter selects (as `workbench export` would) that this judge has not."""
    pair_filter = pair_filter or PairFilter()
    pair_filter.validate()
    _check_mode(template)
    judge_id, _ = judge_config(template, judge, labels_for(PAIRWISE, 5))
    with store.connect() as con:
        rm_id = queries.rm_id_for(con, pair_filter.rm) if pair_filter.rm else None
        todo = queries.stored_pairs_to_judge(con, pair_filter.query_values(rm_id), pair_filter.limit, judge_id)
    return _judge(store, judge, template, name, todo, {"pairs": "stored", "filter": pair_filter.as_dict()}, progress)


def judge_prompt_pairs(store: Store, judge, template: JudgeTemplate, *, selection: PromptSelection | None = None,
                       generation_run: str | None = None, max_pairs_per_prompt: int | None = 10,
                       name: str | None = None, progress: bool = True) -> JudgeResult:
    """Judge every two replies (distinct texts) of each selected prompt, at most `max_pairs_per_prompt`."""
    from workbench.errors import WorkbenchError

    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise WorkbenchError("--max-pairs-per-prompt must be at least 1")
    selection = selection or PromptSelection()
    _check_mode(template)
    judge_id, _ = judge_config(template, judge, labels_for(PAIRWISE, 5))
    with store.connect() as con:
        prompts = [pid for pid, _ in queries.select_prompts(con, selection.as_dict())]
        replies = queries.replies_of_prompts(con, prompts, generation_run)
        judged = queries.judged_pair_keys(con, judge_id, prompts)
    todo = []
    for prompt_id, group in itertools.groupby(replies, key=lambda row: row[0]):
        todo += [(prompt_id, a, b) for a, b in capped_pairs([r for _, r, _ in group], max_pairs_per_prompt)
                 if (a, b) not in judged]
    config = {"pairs": "within prompts", "selection": selection.as_dict(), "generation_run": generation_run,
              "max_pairs_per_prompt": max_pairs_per_prompt}
    return _judge(store, judge, template, name, todo, config, progress)


def _check_mode(template: JudgeTemplate) -> None:
    if template.mode != PAIRWISE:
        raise JudgeTemplateError(f"{template.path}: a {template.mode} template cannot judge pairs")


def _judge(store: Store, judge, template: JudgeTemplate, name: str | None, todo: list[tuple[str, str, str]],
           selected: dict, progress: bool) -> JudgeResult:
    """Check the judge (nothing is stored if it cannot work), register it, judge `todo` chunk by chunk."""
    labels = labels_for(PAIRWISE, 5)
    if todo:
        judge.check(template, labels)
    labeler = register_judge(store, template, judge, labels, name)
    config = {"judge": labeler.as_reference(), **selected}
    run_id = ids.run_id("judging", config)
    result = JudgeResult(run_id, labeler.label, labeler.rm_id, PAIRWISE, len(todo), 0, 0, 0.0)
    started = time.perf_counter()
    with recorded_run(store, run_id, "judging", config | {"template": template.path}) as run:
        with progress_bar(len(todo), f"judging with {labeler.label}", " pairs", progress) as bar:
            for start in range(0, len(todo), judge.chunk_pairs):
                keys = todo[start:start + judge.chunk_pairs]
                verdicts = judge.judge_pairs(template, _pair_items(store, keys))
                table = _verdict_rows(labeler.rm_id, run_id, keys, verdicts)
                store.write(lambda con: _store_verdicts(con, labeler.rm_id, run_id, table, keys))
                result.judged += len(keys)
                result.unparseable += sum(f.value is None or s.value is None for f, s in verdicts)
                bar.update(len(keys))
        result.seconds = round(time.perf_counter() - started, 2)
        run.summary = result.as_dict()
    return result


def _pair_items(store: Store, keys: list[tuple[str, str, str]]) -> list[PairItem]:
    with store.connect() as con:
        prompts, texts = queries.judging_inputs(con, sorted({k[0] for k in keys}),
                                                sorted({r for k in keys for r in k[1:]}))
    return [PairItem(json.loads(prompts[p]), texts[a], texts[b]) for p, a, b in keys]


def _verdict_rows(rm_id: str, run_id: str, keys: list[tuple[str, str, str]],
                  verdicts: list[tuple[Verdict, Verdict]]):
    import pyarrow as pa

    combined = [combine_orders(f.value, s.value) for f, s in verdicts]

    def answers(which: int) -> pa.Array:
        return pa.array([None if v[which].answer is None else v[which].answer[:ANSWER_CHARS] for v in verdicts],
                        pa.string())

    return pa.table({
        "rm_id": pa.array([rm_id] * len(keys), pa.string()),
        "prompt_id": pa.array([k[0] for k in keys], pa.string()),
        "response_a": pa.array([k[1] for k in keys], pa.string()),
        "response_b": pa.array([k[2] for k in keys], pa.string()),
        "p_a_first": pa.array([f.value for f, _ in verdicts], pa.float64()),
        "p_a_second": pa.array([s.value for _, s in verdicts], pa.float64()),
        "p_a_better": pa.array([p for p, _ in combined], pa.float64()),
        "consistent": pa.array([c for _, c in combined], pa.bool_()),
        "answer_a_first": answers(0), "answer_a_second": answers(1),
        "run_id": pa.array([run_id] * len(keys), pa.string()),
    })


def _store_verdicts(con, rm_id: str, run_id: str, table, keys: list[tuple[str, str, str]]) -> None:
    """The chunk's verdicts, then the scores of its prompts refitted from all their verdicts."""
    import pyarrow as pa

    queries.insert_pair_verdicts(con, table)
    prompt_ids = sorted({k[0] for k in keys})
    verdicts = queries.prompt_verdicts(con, rm_id, prompt_ids)
    scores: dict[str, float] = {}
    for _, group in itertools.groupby(verdicts, key=lambda row: row[0]):
        scores |= bradley_terry_scores([(a, b, p) for _, a, b, p in group])
    replies = sorted(scores)
    queries.replace_scores(con, rm_id, replies, pa.table({
        "response_id": pa.array(replies, pa.string()), "rm_id": pa.array([rm_id] * len(replies), pa.string()),
        "score": pa.array([scores[r] for r in replies], pa.float64()),
        "run_id": pa.array([run_id] * len(replies), pa.string())}))
