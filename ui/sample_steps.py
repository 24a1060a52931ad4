"""What the Sample tab does, as plain functions of the app context and the components' values:
which prompts are selected, starting a Best-of-N run, and what the run shows when the timer
ticks. `ui.sample_tab` only wires components to these; tests/ui/test_tab_steps.py drives them
without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass

from ui.context import AppContext
from ui.inputs import number, or_none
from workbench.runtime import commands
from workbench.errors import WorkbenchError
from workbench.runtime.jobs import JobStatus
from workbench.generate.selection import PromptSelection

SAMPLE_ONLY = "(none: sample only, no scores)"


@dataclass
class SampleJob:
    """The Best-of-N job the tab started."""

    id: str


def selection(source, tag, search, limit) -> PromptSelection:
    """The prompt components' values as a `PromptSelection` ("(any)" and blanks mean no filter)."""
    return PromptSelection(source=or_none(source), tag=or_none(tag), search=or_none(search),
                           limit=number(limit, "The prompt limit", integer=True))


def selected_text(ctx: AppContext, chosen: PromptSelection) -> str:
    """How many prompts the selection picks, or how to get some."""
    count = commands.count_selected_prompts(ctx.store, chosen)
    if not count:
        return "**No prompt** matches: import prompts with `workbench import FILE --format prompts`."
    return f"**{count:,} prompts** selected."


def default_reward_model(current: str | None, model_ids: list[str]) -> str:
    """The current pick while it exists, else the first model with weights, else sampling only."""
    if current in model_ids:
        return current
    return next((m for m in model_ids if m != SAMPLE_ONLY), SAMPLE_ONLY)


def start_sampling(ctx: AppContext, current: SampleJob | None, chosen: PromptSelection, policy, rm, n,
                   temperature, top_p, max_new_tokens, seed, batch_size) -> SampleJob:
    """Start `workbench bon` (or `workbench sample` without a reward model) on the selection; the
    policy and reward model must be ones the app may load (`ctx.models`)."""
    if current and ctx.jobs.get(current.id).state == "running":
        raise WorkbenchError("A run is in progress in this tab: wait for it or cancel it first.")
    request = commands.SampleRequest(
        policy=policy, rm=None if rm in (None, SAMPLE_ONLY) else rm, n=int(n), temperature=temperature, top_p=top_p,
        max_new_tokens=int(max_new_tokens), seed=int(seed or 0), batch_size=int(batch_size or 1), selection=chosen)
    if not commands.count_selected_prompts(ctx.store, request.selection):
        raise WorkbenchError("No prompt matches the selection.")
    return SampleJob(ctx.jobs.start("sample", [commands.sample_command(ctx.store, request, ctx.models)]).id)


def adopted_run(ctx: AppContext, current: SampleJob | None) -> SampleJob | None:
    """For a tab with no run of its own: a sampling run that a killed app left running and this
    app adopted at start (`workbench.runtime.job_adoption`), so the tab shows it and can cancel it."""
    if current is not None:
        return None
    return next((SampleJob(job.id) for job in ctx.jobs.running("sample") if getattr(job, "adopted", False)), None)


def run_view(ctx: AppContext, current: SampleJob) -> tuple[JobStatus, str | None]:
    """(the run's status, the result line once it completed; None before)."""
    job = ctx.jobs.get(current.id)
    status = job.status()
    if status.state != "completed":
        return status, None
    return status, result_text(commands.parse_json_output(job.output(0)))


def result_text(result: dict | None) -> str:
    """What a finished `bon` or `sample` run made, in one line."""
    if not result:
        return ""
    if "sampling" in result:
        s, c = result["sampling"], result["scoring"]
        return (f"Sampled **{s['total']:,}** responses ({s['prompts']:,} prompts × {s['n']}; {s['generated']:,} new), "
                f"scored {c['scored']:,} with {c['rm']}, picked the best for **{result['picks']:,}** prompts. "
                "Open **Browse** to see them.")
    return (f"Sampled **{result['total']:,}** responses ({result['prompts']:,} prompts × {result['n']}; "
            f"{result['generated']:,} new). Open **Browse** to see them.")
