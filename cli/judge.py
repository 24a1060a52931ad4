"""`workbench judge`: LLM-as-judge labelers (pairwise verdicts, rubric ratings) and their report."""

from __future__ import annotations

import click

from cli import Context, cli, emit_json, pair_filter_options, pass_ctx, selection_options
from cli.endpoint_options import endpoint_options


def judge_options(command):
    """--judge (a local model) or the --endpoint options, --template, --name, --max-length, --batch-size, --json."""
    options = [
        click.option("--judge", "judge_spec", metavar="MODEL",
                     help="Local judge: an HF model directory, smollm2, a .gguf file or a registered policy name."),
        endpoint_options(("chat",), "chat", "With --endpoint: OpenAI-compatible /v1/chat/completions."),
        click.option("--template", type=click.Path(exists=True, dir_okay=False),
                     help="Template file (default: the shipped one, workbench/data/judge_templates/). An edited "
                          "template is a new labeler."),
        click.option("--name", help="Labeler name [default: judge-MODEL-MODE]; a new template or model is its "
                                    "next version."),
        click.option("--max-length", type=int, default=512, show_default=True,
                     help="Local judge: input tokens at most (the prompt's end and the replies' starts are kept)."),
        click.option("--batch-size", type=int, default=8, show_default=True,
                     help="Local judge: conversations per forward pass (each pair is two); one batch is "
                          "committed at a time."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _make(ctx: Context, judge_spec, served, max_length: int, batch_size: int):
    from workbench.judges.backends import make_judge

    return make_judge(ctx.store, judge_spec, served, max_length=max_length, batch_size=batch_size)


def _echo(result, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    what = "pairs" if result.mode == "pairwise" else "replies"
    click.echo(f"{result.judge}: judged {result.judged} of {result.to_judge} {what} left to judge "
               f"({result.unparseable} unparseable) in {result.seconds} s (run {result.run_id}).")


@cli.group("judge")
def judge_group() -> None:
    """LLM judges as labelers: their verdicts are scores, usable wherever a reward model's are."""


@judge_group.command("pairs")
@judge_options
@pair_filter_options()
@pass_ctx
def judge_pairs_command(ctx: Context, judge_spec, served, template, name, max_length, batch_size, pair_filter,
                        as_json) -> None:
    """Judge stored pairs (selected as `export` selects them), each in both orders; resumable.

    \b
    Example:
      workbench judge pairs --judge smollm2 --source hh-rlhf-harmless-1800 --limit 300
      workbench judge pairs --judge smollm2 --template my-pairwise.txt --rm demo-rm
      workbench judge pairs --endpoint http://127.0.0.1:8000 --model Qwen/Qwen2.5-7B-Instruct
    """
    from workbench.judges.pairwise import judge_stored_pairs
    from workbench.judges.templates import PAIRWISE, JudgeTemplate

    chosen = JudgeTemplate.read(PAIRWISE, template)  # a bad template is refused before anything loads
    with ctx.job_slot("judge"):
        result = judge_stored_pairs(ctx.store, _make(ctx, judge_spec, served, max_length, batch_size), chosen,
                                    pair_filter=pair_filter, name=name, progress=ctx.progress)
    _echo(result, as_json)


@judge_group.command("all-pairs")
@judge_options
@selection_options
@click.option("--generation-run", help="Only replies of this generation run.")
@click.option("--max-pairs-per-prompt", type=int, default=10, show_default=True,
              help="At most this many pairs per prompt (a fixed choice among all of them).")
@pass_ctx
def judge_all_pairs_command(ctx: Context, judge_spec, served, template, name, max_length, batch_size, selection,
                            generation_run, max_pairs_per_prompt, as_json) -> None:
    """Judge every two replies of each selected prompt (capped), each in both orders; resumable.

    \b
    Example:
      workbench judge all-pairs --judge smollm2 --generation-run RUN --max-pairs-per-prompt 6
    """
    from workbench.judges.pairwise import judge_prompt_pairs
    from workbench.judges.templates import PAIRWISE, JudgeTemplate

    chosen = JudgeTemplate.read(PAIRWISE, template)
    with ctx.job_slot("judge"):
        result = judge_prompt_pairs(ctx.store, _make(ctx, judge_spec, served, max_length, batch_size), chosen,
                                    selection=selection, generation_run=generation_run,
                                    max_pairs_per_prompt=max_pairs_per_prompt, name=name, progress=ctx.progress)
    _echo(result, as_json)


@judge_group.command("rubric")
@judge_options
@selection_options
@click.option("--generation-run", help="Only replies of this generation run.")
@click.option("--scale", type=click.Choice(["5", "10"]), default="5", show_default=True,
              help="Ratings from 1 to this (a local judge reads 10 as 1 then 0 when its tokenizer splits it).")
@pass_ctx
def judge_rubric_command(ctx: Context, judge_spec, served, template, name, max_length, batch_size, selection,
                         generation_run, scale, as_json) -> None:
    """Rate each selected reply on a rubric (UltraFeedback's aspects by default); resumable.

    \b
    Example:
      workbench judge rubric --judge smollm2 --source demo
      workbench judge rubric --endpoint http://127.0.0.1:8000 --template my-rubric.txt --scale 10
    """
    from workbench.judges.rubric import rate_replies
    from workbench.judges.templates import RUBRIC, JudgeTemplate

    chosen = JudgeTemplate.read(RUBRIC, template)
    with ctx.job_slot("judge"):
        result = rate_replies(ctx.store, _make(ctx, judge_spec, served, max_length, batch_size), chosen,
                              scale=int(scale), selection=selection, generation_run=generation_run, name=name,
                              progress=ctx.progress)
    _echo(result, as_json)


@judge_group.command("report")
@click.argument("judge")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def judge_report_command(ctx: Context, judge: str, as_json: bool) -> None:
    """A judge's verdicts, position consistency and agreement with the store's human labels.

    \b
    Example:
      workbench judge report judge-smollm2-pairwise --json
    """
    from workbench.judges.report import judge_report

    report = judge_report(ctx.store, judge)
    if as_json:
        emit_json(report)
        return
    agreement = report["human_agreement"]
    click.echo(f"{report['judge']} ({report['mode']}, template {report['template']['sha256'][:12]})")
    for key, value in (report.get("verdicts") or report.get("ratings")).items():
        click.echo(f"  {key:<22}{value}")
    if report.get("position_consistency") is not None:
        click.echo(f"  {'position consistency':<22}{report['position_consistency']:.1%}")
    if agreement["pairs"]:
        low, high = agreement["ci95"]
        click.echo(f"  agrees with human labels on {agreement['accuracy']:.1%} of {agreement['pairs']} pairs "
                   f"(95% CI {low:.1%}-{high:.1%})")
