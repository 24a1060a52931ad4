"""`workbench eval policy`, `workbench round`, `workbench rounds`, `workbench ablate`: iterative
DPO on the store and the measured effect of curation."""

from __future__ import annotations

import click

from engine.data import SamplingParams
from cli import Context, cli, emit_json, pass_ctx, selection_options


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
    from workbench.dpo.policy_eval import describe_report, evaluate_policies

    report = evaluate_policies(ctx.store, policy_a, policy_b, rm, heldout_rm=heldout_rm, selection=selection, n=n,
                               params=eval_params(temperature, top_p, max_new_tokens, eval_seed),
                               batch_size=batch_size, progress=ctx.progress)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo("\n".join(describe_report(report)))


# The pair filter's fields a round takes as options: the rest it sets itself (its labeler, strategy and run).
ROUND_FILTER_FIELDS = ("min_margin", "min_score", "max_score", "min_chars", "max_chars", "exclude_flagged")


def round_options(command):
    """One option per RoundConfig field, the DPO hyper-parameters and the round's pair-filter fields;
    the command receives `round_config`, `dpo_settings` and `pair_filter`."""
    import dataclasses
    import typing
    from functools import wraps

    from cli.dpo import dpo_config_options
    from workbench.curate.pair_filter import PairFilter, field_type, option_name
    from workbench.dpo.rounds import RoundConfig

    hints = typing.get_type_hints(RoundConfig)
    names = [f.name for f in dataclasses.fields(RoundConfig)]

    @wraps(command)
    def wrapper(*args, **kwargs):
        config = RoundConfig(**{n: kwargs.pop(n) for n in names})
        chosen = {n: kwargs.pop(n) for n in ROUND_FILTER_FIELDS}
        return command(*args, round_config=config, pair_filter=PairFilter(**chosen), **kwargs)

    filters = {f.name: f for f in dataclasses.fields(PairFilter)}
    for name in reversed(ROUND_FILTER_FIELDS):
        f, kind = filters[name], field_type(name)
        flag_help = f"Pair filter before DPO: {f.metadata['help']}"
        wrapper = (click.option(option_name(name), name, is_flag=True, help=flag_help) if kind is bool else
                   click.option(option_name(name), name, type=kind, help=flag_help))(wrapper)
    for f in reversed(dataclasses.fields(RoundConfig)):
        kind = typing.get_args(hints[f.name]) or (hints[f.name],)
        kind = next(k for k in kind if k is not type(None))
        choices = f.metadata.get("choices")
        wrapper = click.option(option_name(f.name), f.name, type=click.Choice(choices) if choices else kind,
                               default=f.default, show_default=f.default is not None,
                               required=f.name == "rm", help=f.metadata["help"])(wrapper)
    return dpo_config_options(wrapper, skip=frozenset({"policy", "out_dir", "reference"}))


@cli.command("round")
@round_options
@click.option("--rounds", "count", type=int, default=1, show_default=True, help="Run this many rounds in a row.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def round_command(ctx: Context, round_config, dpo_settings, pair_filter, count, as_json) -> None:
    """One round of iterative DPO: fresh prompts -> N samples from the current policy -> scores -> pairs ->
    DPO (reference: the first policy, or --reference previous) -> evaluation against the first policy on
    the held-out prompts. Rerun the same command after an interruption: it finishes the round.

    \b
    Example:
      workbench round --rm rm-hh-a --heldout-rm rm-hh-b --source hh-rlhf-harmless-1800 \\
          --prompts 200 --eval-prompts 200 --n 4 --max-new-tokens 64 --max-steps 25 --json
      workbench round --rm demo-rm --rounds 3 --prompts 50 --eval-prompts 50
    """
    from workbench.dpo.rounds import run_rounds

    results = run_rounds(ctx.store, round_config, count, dpo_settings=dpo_settings, pair_filter=pair_filter,
                         progress=ctx.progress)
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    for r in results:
        h = r.evaluation["training_rm"]
        click.echo(f"Round {r.round}: {r.policy_in} -> {r.policy_out} on {r.train_prompts} prompts; win rate vs the "
                   f"first policy {h['win_rate']:.3f} [{h['win_rate_ci'][0]:.3f}, {h['win_rate_ci'][1]:.3f}], "
                   f"length-controlled {h['lc_win_rate']:.3f}; phases {r.phase_seconds} s.")


@cli.command("rounds")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def rounds_command(ctx: Context, as_json) -> None:
    """List the rounds: policies in and out, reference, prompts, export hash, evaluation.

    \b
    Example:
      workbench rounds --json
    """
    from workbench.dpo.rounds import list_rounds

    rounds = list_rounds(ctx.store)
    if as_json:
        emit_json(rounds)
        return
    if not rounds:
        click.echo("No rounds yet: start one with `workbench round --rm MODEL`.")
    for r in rounds:
        line = f"Round {r['round']} ({r['status']}, phase {r['phase']}): {r['policy_in']} -> {r['policy_out'] or '?'}"
        line += f", reference {r['reference']}, {r['train_prompts']} prompts"
        if r["evaluation"]:
            h = r["evaluation"]["training_rm"]
            line += f", win rate vs first {h['win_rate']:.3f} [{h['win_rate_ci'][0]:.3f}, {h['win_rate_ci'][1]:.3f}]"
        click.echo(line)


def dpo_config_options_for_ablate():
    from cli.dpo import dpo_config_options

    return dpo_config_options(skip=frozenset({"policy", "out_dir", "reference"}))


def pair_filter_options_for_ablate():
    """The curated arm's filter: every PairFilter field but the labeler and the run (the round's)."""
    import dataclasses
    from functools import wraps

    from workbench.curate.pair_filter import PairFilter, field_type, option_name

    names = [f.name for f in dataclasses.fields(PairFilter) if f.name not in ("rm", "generation_run", "label")]

    def decorate(command):
        @wraps(command)
        def wrapper(*args, **kwargs):
            return command(*args, pair_filter=PairFilter(**{n: kwargs.pop(n) for n in names}), **kwargs)

        for f in reversed([f for f in dataclasses.fields(PairFilter) if f.name in names]):
            kind = field_type(f.name)
            option = click.option(option_name(f.name), f.name, is_flag=True, help=f.metadata["help"]) if kind is bool \
                else click.option(option_name(f.name), f.name, type=kind, help=f.metadata["help"])
            wrapper = option(wrapper)
        return wrapper

    return decorate


@cli.command("ablate")
@click.option("--round", "round_number", type=int, default=1, show_default=True,
              help="The round whose start policy and scored samples both arms train from.")
@click.option("--baseline", type=click.Choice(["random-pair", "unfiltered"]), default="random-pair",
              show_default=True, help="random-pair: one random pair of the same replies per prompt; unfiltered: "
                                      "random pairs from every ordered pair.")
@click.option("--out-root", default="runs/ablation", show_default=True, help="Where the pair files and DPO runs go.")
@click.option("--heldout-rm", help="Held-out reward model for the evaluation.")
@click.option("--max-new-tokens", type=int, default=128, show_default=True, help="Tokens per evaluation reply.")
@click.option("--eval-seed", type=int, default=1234, show_default=True)
@dpo_config_options_for_ablate()
@pair_filter_options_for_ablate()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ablate_command(ctx: Context, round_number, baseline, out_root, heldout_rm, max_new_tokens, eval_seed,
                   dpo_settings, pair_filter, as_json) -> None:
    """The measured value of a pair filter: DPO from the same start with the same hyper-parameters, seed and
    number of pairs on (a) the curated selection and (b) a baseline, both evaluated against the start and
    each other on the held-out prompts.

    \b
    Example:
      workbench ablate --round 1 --strategy best-vs-worst --min-margin 1.0 --baseline random-pair \\
          --heldout-rm rm-hh-b --max-steps 25 --json
    """
    from workbench.dpo.ablation import ablate, ablation_table

    report = ablate(ctx.store, round_number, pair_filter, baseline=baseline, dpo_settings=dpo_settings,
                    out_root=out_root, heldout_rm=heldout_rm,
                    eval_params=SamplingParams(0.7, 0.95, max_new_tokens, eval_seed), progress=ctx.progress)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"{report.pairs_each} pairs each (curated selection {report.curated_available}, baseline "
                   f"{report.baseline_available}):")
        click.echo("\n".join(ablation_table(report)))
