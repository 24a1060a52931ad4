"""`workbench dpo train` and `workbench policies`: DPO on stored pairs into a registered policy."""

from __future__ import annotations

import dataclasses
import typing

import click

from engine.dpo import DPOTrainConfig
from cli import Context, cli, emit_json, pair_filter_options, pass_ctx

_EXPLICIT = {"policy", "out_dir"}  # declared by hand, with their own help


def _click_type(annotation):
    args = typing.get_args(annotation)
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    return base if base in (int, float, str, bool) else str


def dpo_config_options(command=None, *, skip: frozenset = frozenset(_EXPLICIT)):
    """One option per DPOTrainConfig field (but `skip`), with the field's help (TRL style: the dataclass
    drives the CLI); the command receives the ones given as `dpo_settings`."""
    from functools import wraps

    if command is None:
        return lambda c: dpo_config_options(c, skip=skip)
    hints = typing.get_type_hints(DPOTrainConfig)
    names = [f.name for f in dataclasses.fields(DPOTrainConfig) if f.name not in skip]

    @wraps(command)
    def wrapper(*args, **kwargs):
        settings = {name: kwargs.pop(name) for name in names}
        return command(*args, dpo_settings={k: v for k, v in settings.items() if v is not None}, **kwargs)

    for f in reversed(dataclasses.fields(DPOTrainConfig)):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), _click_type(hints[f.name])
        if kind is bool:
            if f.default is True:
                wrapper = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=f.metadata["help"])(wrapper)
            else:
                wrapper = click.option(flag, f.name, is_flag=True, default=None, help=f.metadata["help"])(wrapper)
        else:
            wrapper = click.option(flag, f.name, type=kind, default=None,
                                   help=f"{f.metadata['help']} [default: {f.default}]")(wrapper)
    return wrapper


@cli.group("dpo")
def dpo_group() -> None:
    """DPO training of policies on the store's pairs."""


@dpo_group.command("train")
@click.option("--policy", default="smollm2", show_default=True,
              help="Starting policy: a registered policy NAME, an HF directory, a .gguf file or smollm2.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New directory for checkpoints and the merged policy (rerun the command to resume).")
@click.option("--name", help="Name to register the policy under [default: the --out directory's name].")
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False),
              help="Train on this export file (TRL conversational JSONL) instead of filtering the store.")
@dpo_config_options
@pair_filter_options()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def dpo_train_command(ctx: Context, policy, out_dir, name, pairs_file, dpo_settings, pair_filter, as_json) -> None:
    """Train a policy with DPO (TRL's DPOTrainer; LoRA by default, merged at the end) on the pairs the
    filter selects (as `export` selects them) or on an export file, and register it by name.

    \b
    Example:
      workbench dpo train --policy smollm2 --out runs/dpo-1 --rm demo-rm --min-margin 1 --max-steps 50
      workbench dpo train --pairs dpo.jsonl --out runs/dpo-ipo --loss-type ipo --beta 0.5
      workbench sample --policy dpo-1 --n 4 --limit 10
    """
    from pathlib import Path

    from workbench.dpo.dpo_training import train_policy
    from workbench.curate.pair_filter import PairFilter

    if pairs_file and pair_filter != PairFilter():
        raise click.UsageError("--pairs trains on a file: drop the pair filters (--rm, --min-margin, ...)")
    config = DPOTrainConfig(policy=policy, out_dir=out_dir, **dpo_settings)
    result = train_policy(ctx.store, config, name or Path(out_dir).name,
                          pair_filter=None if pairs_file else pair_filter, pairs_file=pairs_file,
                          progress=ctx.progress)
    if as_json:
        emit_json(result.as_dict())
    elif result.already_trained:
        click.echo(f"Policy {result.name} is trained already: {result.path}.")
    else:
        click.echo(f"Trained policy {result.name} ({result.steps} steps on {result.pairs} pairs, export "
                   f"{result.export_hash[:12]}) into {result.path}.")


@cli.command("policies")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def policies_command(ctx: Context, as_json) -> None:
    """List the policies trained here (name, base, reference, pairs, path).

    \b
    Example:
      workbench policies --json
    """
    from workbench.dpo.policies import list_policies

    policies = list_policies(ctx.store)
    if as_json:
        emit_json(policies)
        return
    if not policies:
        click.echo("No policies yet: train one with `workbench dpo train`.")
    for p in policies:
        click.echo(f"{p['name']}: from {p['base']} (reference {p['reference']}), pairs {p['export_hash'][:12]}, "
                   f"{p['path']}")
