"""What the Retrain tab does, as plain functions of the app context and the components' values:
plan and start a training, evaluation or re-scoring job, and read a job's state when the tab's
timer ticks. `ui.retrain_tab` only wires components to these; tests/ui/test_retrain_steps.py
drives them without a browser.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ui.context import AppContext
from ui.curate_tab import FILTER_INPUTS, to_filter
from ui.inputs import number
from workbench.curate import curation, overview
from workbench.runtime import commands
from workbench.errors import WorkbenchError
from workbench.models.eval_sets import evaluation_set
from workbench.runtime.jobs import JobStatus
from workbench.curate.pair_filter import PairFilter
from workbench.models.reward_models import resolve_reward_model

# The training settings' components, in this order.
SETTINGS = ("name", "base", "recipe", "epochs", "lr", "max_length", "pairs_per_step", "max_steps", "eval_fraction",
            "seed")


@dataclass
class RetrainJob:
    """The job the tab started: its id, what it does (train | eval | score), where a training
    writes, and the models' labels (the trained model; or the two models evaluated)."""

    id: str
    kind: str
    out_dir: str | None = None
    names: list[str] = field(default_factory=list)


@dataclass
class JobView:
    """What a timer tick shows: the job's status, the loss curve (training only), and once the
    job is done, the comparison table, a message and the model to select."""

    status: JobStatus
    curve: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    text: str = ""
    trained: str | None = None


def train_request(name, base, recipe, epochs, lr, max_length, pairs_per_step, max_steps, eval_fraction,
                  seed) -> commands.TrainRequest:
    """The settings' values (in `SETTINGS` order) as a `TrainRequest`."""
    return commands.TrainRequest(name=(name or "").strip(), base=base or "", recipe=recipe or "", epochs=epochs or 0,
                                 lr=number(lr, "Learning rate"), max_length=int(max_length or 0),
                                 pairs_per_step=int(pairs_per_step or 0),
                                 max_steps=number(max_steps, "Max steps", integer=True),
                                 eval_fraction=eval_fraction or 0, seed=int(seed or 0))


def _split(values) -> tuple[list, list]:
    if len(values) != len(SETTINGS) + len(FILTER_INPUTS):
        raise ValueError(f"expected {len(SETTINGS)} settings and {len(FILTER_INPUTS)} filters, got {len(values)}")
    return list(values[:len(SETTINGS)]), list(values[len(SETTINGS):])


def plan_training(ctx: AppContext, values) -> tuple[commands.TrainRequest, Path, list[str]]:
    """(request, output directory, argv) for the settings followed by the Curate tab's filters; the
    base model must be one the app may load (`ctx.models`)."""
    settings, filters = _split(values)
    request = train_request(*settings)
    out_dir = commands.training_dir(ctx.runs_dir, request.name)
    return request, out_dir, commands.train_command(ctx.store, to_filter(*filters), request, out_dir, ctx.models)


def describe_training(ctx: AppContext, values) -> tuple[str, str]:
    """(how many pairs the training would use, the command line it would run, or why it cannot)."""
    flt = to_filter(*_split(values)[1])
    total = curation.curation_preview(ctx.store, ctx.index, flt, page_size=1).total
    text = f"Training data: **{total:,} pairs** selected in Curate & export ({flt.describe()})."
    try:
        argv = plan_training(ctx, values)[2]
        shown = " ".join(shlex.quote(a) for a in ["workbench", *argv[3:]])
    except WorkbenchError as error:
        shown = f"# {error}"
    return text, shown


def model_selection(ctx: AppContext, current_new: str | None, current_old: str | None):
    """(choices, new, old, hint) for the two model dropdowns: the current picks when still there,
    else the newest model as new and another one as old (none when there is no other one)."""
    choices = overview.reward_model_choices(ctx.store, with_weights=True)
    labels = [v for _, v in choices]
    new = current_new if current_new in labels else (labels[-1] if labels else None)
    old = current_old if current_old in labels and current_old != new else next((i for i in labels if i != new), None)
    hint = "The newest model by default." if labels else "No reward model with weights yet: train one above."
    return choices, new, old, hint


def check_idle(ctx: AppContext, current: RetrainJob | None) -> None:
    """Refuse to start a job while this tab's last one runs."""
    if current and ctx.jobs.get(current.id).state == "running":
        raise WorkbenchError("A job is running in this tab: wait for it or cancel it first.")


def start_training(ctx: AppContext, current: RetrainJob | None, values) -> RetrainJob:
    """Start `workbench rm train --from-store` with the settings and filters."""
    check_idle(ctx, current)
    request, out_dir, argv = plan_training(ctx, values)
    if (out_dir / "config.json").exists():
        raise WorkbenchError(f"{out_dir} already holds a model: pick another name.")
    return RetrainJob(ctx.jobs.start("train", [argv]).id, "train", str(out_dir), [request.name])


def evaluation_pairs(ctx: AppContext, new, eval_set: str, filters) -> dict:
    """`eval_commands`' pair arguments for the chosen evaluation set (`commands.EVAL_SETS`)."""
    if eval_set == "heldout":
        return {"data": commands.heldout_path(new.path)}
    if eval_set == "human":
        return {"pair_filter": PairFilter(label="human")}
    if eval_set == "curated":
        return {"pair_filter": to_filter(*filters)}
    raise WorkbenchError(f"Pick what to evaluate on: {', '.join(commands.EVAL_SETS.values())}.")


def start_evaluation(ctx: AppContext, current: RetrainJob | None, new_id: str, old_id: str,
                     eval_set: str = "heldout", filters=()) -> RetrainJob:
    """Evaluate both models on the chosen pairs (both must be ones the app may load). Pairs either
    model labelled are left out; a set with nothing else is refused here, before any job starts."""
    check_idle(ctx, current)
    if not new_id or not old_id:
        raise WorkbenchError("Pick the new model and the one to compare it with.")
    ctx.models.check_reward_model(ctx.store, new_id)  # before resolving: a directory would be registered
    ctx.models.check_reward_model(ctx.store, old_id)
    new, old = resolve_reward_model(ctx.store, new_id), resolve_reward_model(ctx.store, old_id)
    pairs = evaluation_pairs(ctx, new, eval_set, filters)
    argvs = commands.eval_commands(ctx.store, [old_id, new_id], **pairs)
    evaluation_set(ctx.store, [old_id, new_id], data=[str(pairs["data"])] if "data" in pairs else (),
                   pair_filter=pairs.get("pair_filter"))  # refuses a circular set with the reason
    return RetrainJob(ctx.jobs.start("eval", argvs).id, "eval", None, [old.label, new.label])


def start_rescore(ctx: AppContext, current: RetrainJob | None, new_id: str) -> RetrainJob:
    """Score the store with the new model (one the app may load)."""
    check_idle(ctx, current)
    return RetrainJob(ctx.jobs.start("score", [commands.rescore_command(ctx.store, new_id, ctx.models)]).id,
                      "score")


def _left_out(outputs: list[str]) -> str:
    result = commands.parse_json_output(outputs[0]) or {}
    if not result.get("excluded_own_labels"):
        return " Neither model labelled any of them."
    return (f" **{result['excluded_own_labels']:,} pairs labelled by {', '.join(result['labelled_by_compared'])} "
            "were left out: a model graded on its own labels scores 1.0 by construction.**")


def adopted_job(ctx: AppContext, current: RetrainJob | None) -> RetrainJob | None:
    """For a tab with no job of its own: a training, evaluation or scoring job that a killed app left
    running and this app adopted at start (`workbench.runtime.job_adoption`), so the tab shows and can cancel it."""
    if current is not None:
        return None
    for job in ctx.jobs.running():
        if getattr(job, "adopted", False) and job.kind in ("train", "eval", "score"):
            names = [job.option("--name")] if job.kind == "train" and job.option("--name") else []
            out_dir = job.option("--out") if job.kind == "train" else None
            return RetrainJob(job.id, job.kind, out_dir, names)
    return None


def job_view(ctx: AppContext, current: RetrainJob) -> JobView:
    """The job's state now, and what its result means once it is done."""
    job = ctx.jobs.get(current.id)
    status = job.status()
    curve = commands.loss_curve(commands.read_metrics(current.out_dir)) \
        if current.kind == "train" and current.out_dir else None
    view = JobView(status, curve)
    if status.state != "completed":
        return view
    if current.kind == "eval":
        outputs = [job.output(0), job.output(1)]
        view.table = commands.compare_evaluations(current.names, outputs)
        view.text = "Evaluated both models on the same pairs." + _left_out(outputs)
    elif current.kind == "score":
        result = commands.parse_json_output(job.output(0)) or {}
        view.text = (f"Scored {result.get('scored', 0):,} responses with {result.get('rm', 'the model')}. "
                     "The Overview and Browse tabs show the new scores.")
    elif not current.names:  # adopted from a killed app, whose command named no model
        view.text = "The training finished."
    else:
        view.text = f"Trained and registered **{current.names[0]}**. Evaluate it below, then score the store."
        view.trained = resolve_reward_model(ctx.store, current.names[0]).label
    return view
