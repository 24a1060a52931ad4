"""What the Rounds tab does, as plain functions of the app context and the components' values:
the rounds table, the reward distribution and the ablation table (from `workbench.dpo.round_views`),
and starting a `workbench round` or `workbench ablate` job in the app's job slots (a training-class
job, as Retrain's). `ui.rounds_tab` only wires components to these; tests drive them without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ui.context import AppContext
from ui.inputs import number
from workbench.dpo import round_views
from workbench.runtime import commands
from workbench.errors import WorkbenchError
from workbench.runtime.jobs import JobStatus, workbench_command

# The round settings' components, in this order.
SETTINGS = ("rm", "heldout_rm", "source", "prompts", "eval_prompts", "n", "max_new_tokens", "max_steps", "lr",
            "ablate_margin")
JOB_KIND = "train"  # counts against the training slot


@dataclass
class RoundsJob:
    id: str
    kind: str  # round | ablate


def rounds_table(ctx: AppContext) -> pd.DataFrame:
    rows = round_views.round_rows(ctx.store)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["round", "status", "policy in", "policy out"])


def reward_distribution(ctx: AppContext) -> pd.DataFrame:
    return pd.DataFrame(round_views.reward_histogram(ctx.store), columns=["round", "reward", "share"])


def ablation_table(ctx: AppContext) -> pd.DataFrame:
    rows = round_views.ablation_rows(ctx.store)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["comparison", "win rate", "LC win rate"])


# The app's bounds on what a request may ask (`workbench.runtime.commands.MAX_*`, as the Sample tab's).
_MAXIMA = {"n": commands.MAX_N, "max_new_tokens": commands.MAX_NEW_TOKENS}


def round_argv(ctx: AppContext, values) -> list[str]:
    """argv of `workbench round` for the settings (in `SETTINGS` order); the reward models must be ones
    the app may load."""
    given = dict(zip(SETTINGS, values, strict=True))
    rm = ctx.models.check_reward_model(ctx.store, given["rm"])
    argv = ["round", "--rm", rm, "--out-root", str(ctx.runs_dir / "rounds")]
    if (given["heldout_rm"] or "").strip():
        argv += ["--heldout-rm", ctx.models.check_reward_model(ctx.store, given["heldout_rm"])]
    if (given["source"] or "").strip():
        argv += ["--source", given["source"].strip()]
    for name in ("prompts", "eval_prompts", "n", "max_new_tokens", "max_steps"):
        value = number(given[name], name.replace("_", " "), integer=True)
        if value is not None and name in _MAXIMA and not 1 <= value <= _MAXIMA[name]:
            raise WorkbenchError(f"{name.replace('_', ' ')} must be between 1 and {_MAXIMA[name]}")
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    lr = number(given["lr"], "Learning rate")
    if lr is not None and not 0 < lr <= commands.MAX_LR:
        raise WorkbenchError(f"the learning rate must be above 0 and at most {commands.MAX_LR:g}")
    if lr is not None:
        argv += ["--lr", str(lr)]
    return workbench_command(ctx.store, "-q", *argv, "--json")


def ablate_argv(ctx: AppContext, values) -> list[str]:
    """argv of `workbench ablate` on the last round: best-vs-worst with the margin vs one random pair per prompt."""
    given = dict(zip(SETTINGS, values, strict=True))
    margin = number(given["ablate_margin"], "Minimum margin")
    if margin is None:
        raise WorkbenchError("Give the curated arm's minimum margin.")
    rounds = round_views.round_rows(ctx.store)
    if not rounds:
        raise WorkbenchError("Run a round first: the ablation trains from a round's samples.")
    argv = ["ablate", "--round", str(rounds[-1]["round"]), "--strategy", "best-vs-worst", "--min-margin", str(margin),
            "--out-root", str(ctx.runs_dir / "ablation")]
    steps = number(given["max_steps"], "max steps", integer=True)
    if steps is not None:
        argv += ["--max-steps", str(steps)]
    if (given["heldout_rm"] or "").strip():
        argv += ["--heldout-rm", ctx.models.check_reward_model(ctx.store, given["heldout_rm"])]
    return workbench_command(ctx.store, "-q", *argv, "--json")


def start(ctx: AppContext, current: RoundsJob | None, kind: str, values) -> RoundsJob:
    """Start a round or an ablation as a training-class job (refused while this tab's last one runs)."""
    if current and ctx.jobs.get(current.id).state == "running":
        raise WorkbenchError("A job is running in this tab: wait for it or cancel it first.")
    argv = round_argv(ctx, values) if kind == "round" else ablate_argv(ctx, values)
    return RoundsJob(ctx.jobs.start(JOB_KIND, [argv]).id, kind)


def job_status(ctx: AppContext, current: RoundsJob) -> JobStatus:
    return ctx.jobs.get(current.id).status()
