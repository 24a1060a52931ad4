"""`workbench eval policy`, `workbench round`, `workbench rounds`, `workbench ablate`: iterative
DPO on the store and the measured effect of curation."""

from __future__ import annotations

import click

from engine.data import SamplingParams
from workbench.cli import Context, cli, emit_json, pass_ctx, selection_options


def eval_sampling_options(command):
    """Sampling of the evaluation replies: the same seed and parameters for both policies."""
    for option in reversed([
        click.option("--n", type=int, default=1, show_default=True, help="Replies per prompt and policy."),
        click.option("--temperature", type=float, default=0.7, show_default=True, help="0 means greedy."),
        click.option("--top-p", type=float, default=0.95, show_default=True),
        click.option("--max-new-tokens", type=int, default=128, show_default=True),
        click.option("--eval-seed", type=int, default=1234, show_default=True,
                     help="Run seed of the evaluation replies (the same for both policies)."),
        click.option("--batch-size", type=int, default=64, show_default=True, help="Sample rows per forward pass."),
    ]):
        command = option(command)
    return command


def eval_params(temperature, top_p, max_new_tokens, eval_seed) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=eval_seed)


@cli.group("eval")
def eval_group() -> None:
    """Evaluate policies head to head."""


@eval_group.command("policy")
@click.argument("policy_a")
@click.option("--against", "policy_b", required=True, help="The policy A is compared with (NAME, directory, smollm2).")
@click.option("--rm", required=True, help="Reward model that scores both (NAME, NAME@VERSION, id, directory).")
@click.option("--heldout-rm", help="A second reward model that played no part in training: a win under --rm that "
                                   "vanishes under it is flagged as reward hacking.")
@selection_options
@eval_sampling_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def eval_policy_command(ctx: Context, policy_a, policy_b, rm, heldout_rm, selection, n, temperature, top_p,
                        max_new_tokens, eval_seed, batch_size, as_json) -> None:
    """Both policies answer the same held-out prompts; a reward model scores both; report A's win rate
    over B (ties half) with a 95% bootstrap CI, mean reward and length, and the length-controlled win rate.

    \b
    Example:
      workbench eval policy round-1 --against smollm2 --rm rm-hh --heldout-rm rm-hh-b \\
          --source hh-rlhf-harmless-1800 --limit 200 --json
    """
    from workbench.policy_eval import describe_report, evaluate_policies

    report = evaluate_policies(ctx.store, policy_a, policy_b, rm, heldout_rm=heldout_rm, selection=selection, n=n,
                               params=eval_params(temperature, top_p, max_new_tokens, eval_seed),
                               batch_size=batch_size, progress=ctx.progress)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo("\n".join(describe_report(report)))
