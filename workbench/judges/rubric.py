"""`workbench judge rubric`: an absolute rating of each selected reply by an LLM judge, into the store.

The default template asks for one rating on UltraFeedback's four aspects (helpfulness, honesty,
instruction following, truthfulness); `--template FILE` gives your own rubric. A local judge's
rating is the expected value over the digit answers (softmax of their logits); a remote judge's is
its answer parsed strictly (a whole number on the scale, nothing else). Ratings land in
`judge_ratings` (unparseable answers with no rating) and, when there is one, as the reply's score
under the judge's labeler. Chunks of one batch are committed as they finish; a rerun rates only
the replies not rated yet.
"""

from __future__ import annotations

import json
import time

from engine.progress import progress_bar
from workbench import ids
from workbench.generate.selection import PromptSelection
from workbench.judges.backends import RatingItem, rubric_labels
from workbench.judges.labeler import judge_config, register_judge
from workbench.judges.pairwise import ANSWER_CHARS, JudgeResult
from workbench.judges.templates import RUBRIC, JudgeTemplate, JudgeTemplateError
from workbench.store import Store, queries
from workbench.store.runs import recorded_run


def rate_replies(store: Store, judge, template: JudgeTemplate, *, scale: int = 5,
                 selection: PromptSelection | None = None, generation_run: str | None = None,
                 name: str | None = None, progress: bool = True) -> JudgeResult:
    """Rate every reply of the selected prompts (of one generation run, if given) not rated yet."""
    if template.mode != RUBRIC:
        raise JudgeTemplateError(f"{template.path}: a {template.mode} template cannot rate replies")
    labels = rubric_labels(scale)
    selection = selection or PromptSelection()
    judge_id, _ = judge_config(template, judge, labels)
    with store.connect() as con:
        prompts = [pid for pid, _ in queries.select_prompts(con, selection.as_dict())]
        todo = queries.responses_to_rate(con, judge_id, prompts, generation_run)
    if todo:
        judge.check(template, labels, scale)  # refused before anything is stored
    labeler = register_judge(store, template, judge, labels, name)
    config = {"judge": labeler.as_reference(), "selection": selection.as_dict(), "generation_run": generation_run}
    run_id = ids.run_id("judging", config)
    result = JudgeResult(run_id, labeler.label, labeler.rm_id, RUBRIC, len(todo), 0, 0, 0.0)
    started = time.perf_counter()
    with recorded_run(store, run_id, "judging", config | {"template": template.path}) as run:
        with progress_bar(len(todo), f"rating with {labeler.label}", " replies", progress) as bar:
            for start in range(0, len(todo), judge.chunk_replies):
                chunk = todo[start:start + judge.chunk_replies]
                with store.connect() as con:
                    prompts_json, texts = queries.judging_inputs(con, sorted({p for _, p in chunk}),
                                                                 [r for r, _ in chunk])
                items = [RatingItem(json.loads(prompts_json[p]), texts[r]) for r, p in chunk]
                verdicts = judge.rate(template, items, scale)
                store.write(lambda con: _store_ratings(con, labeler.rm_id, run_id, chunk, verdicts))
                result.judged += len(chunk)
                result.unparseable += sum(v.value is None for v in verdicts)
                bar.update(len(chunk))
        result.seconds = round(time.perf_counter() - started, 2)
        run.summary = result.as_dict()
    return result


def _store_ratings(con, rm_id: str, run_id: str, chunk: list[tuple[str, str]], verdicts) -> None:
    import pyarrow as pa

    n = len(chunk)
    queries.insert_ratings(con, pa.table({
        "rm_id": pa.array([rm_id] * n, pa.string()), "response_id": pa.array([r for r, _ in chunk], pa.string()),
        "prompt_id": pa.array([p for _, p in chunk], pa.string()),
        "rating": pa.array([v.value for v in verdicts], pa.float64()),
        "answer": pa.array([None if v.answer is None else v.answer[:ANSWER_CHARS] for v in verdicts], pa.string()),
        "run_id": pa.array([run_id] * n, pa.string())}))
    rated = [(r, v.value) for (r, _), v in zip(chunk, verdicts) if v.value is not None]
    queries.insert_new(con, "scores", pa.table({
        "response_id": pa.array([r for r, _ in rated], pa.string()),
        "rm_id": pa.array([rm_id] * len(rated), pa.string()),
        "score": pa.array([v for _, v in rated], pa.float64()),
        "run_id": pa.array([run_id] * len(rated), pa.string())}))
