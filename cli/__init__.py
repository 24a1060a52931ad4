"""The `workbench` command line: a thin layer over the library.

Each command's body calls one library function and turns its errors into a one-line message
with a non-zero exit. Global options (`--db`, `--timeout`, `--quiet`) come before the command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing

import click

from workbench.errors import USER_ERRORS
from workbench.store import Store, default_db_path


class _Group(click.Group):
    """Turns user errors from any subcommand into a clean one-line message (exit 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            raise click.ClickException(" ".join(str(error).split())) from None


class Context:
    def __init__(self, db: str, timeout: float, quiet: bool):
        self.db, self.timeout, self.quiet = db, timeout, quiet
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db, timeout=self.timeout)
        return self._store

    @property
    def progress(self) -> bool:
        return not self.quiet

    def job_slot(self, kind: str, shared: bool = False):
        """The store's job slot for a long command (`workbench.runtime.job_slots`): the app and the CLI never
        run two trainings, or two sampling/scoring/evaluation jobs, at once on one store."""
        from workbench.runtime.job_slots import cli_slot

        command = click.get_current_context().command_path
        return cli_slot(self.db, kind, f"{command} (pid {os.getpid()})", shared=shared)


pass_ctx = click.make_pass_decorator(Context)


def emit_json(value) -> None:
    """Print a value as indented JSON (dates and paths as strings)."""
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def dataclass_options(cls, *, skip: tuple[str, ...] = (), flags: dict[str, str] | None = None,
                      explicit_only: bool = False):
    """One option per field of the dataclass `cls` (TRL style: the dataclass is the source of truth):
    `--field-name` (or `flags[name]`), typed from the annotation (Optional unwrapped), with the help
    and choices of the field's metadata; a bool is a flag. Options default to the field's default,
    shown in the help. With `explicit_only` every option defaults to None instead, so that the
    command can tell the options given from the rest (`rm train`'s recipes fill those)."""
    hints = typing.get_type_hints(cls)
    flags = flags or {}

    def decorate(command):
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip:
                continue
            flag = flags.get(f.name, "--" + f.name.replace("_", "-"))
            kind = value_type(hints[f.name])
            default = None if f.default is dataclasses.MISSING else f.default
            help_text = f.metadata.get("help", "")
            if kind is bool:
                option = click.option(flag, f.name, is_flag=True, default=None if explicit_only else default,
                                      help=help_text)
            else:
                choices = f.metadata.get("choices")
                shown = default is not None
                option = click.option(flag, f.name, type=click.Choice(choices) if choices else kind,
                                      default=None if explicit_only else default,
                                      show_default=shown and not explicit_only,
                                      help=f"{help_text} [default: {default}]" if explicit_only else help_text)
            command = option(command)
        return command

    return decorate


def value_type(annotation) -> type:
    """str, int, float or bool: the type of an annotation, Optional unwrapped."""
    return next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)


def pair_filter_options(rm_flag: str = "--rm"):
    """One option per `PairFilter` field (`dataclass_options`); the command receives them as
    `pair_filter`. `rm_flag` names the option for the labelling reward model (`rm eval` and
    `rm train` use `--rm` for another model)."""
    from functools import wraps

    from workbench.curate.pair_filter import PairFilter

    names = [f.name for f in dataclasses.fields(PairFilter)]

    def decorate(command):
        @wraps(command)
        def wrapper(*args, **kwargs):
            pair_filter = PairFilter(**{name: kwargs.pop(name) for name in names})
            return command(*args, pair_filter=pair_filter, **kwargs)

        return dataclass_options(PairFilter, flags={"rm": rm_flag})(wrapper)

    return decorate


def selection_options(command):
    """Options that select prompts; the command receives them as `selection` (a PromptSelection)."""
    from functools import wraps

    from workbench.generate.selection import PromptSelection

    @click.option("--source", help="Only prompts from this source.")
    @click.option("--tag", help="Only prompts with this tag.")
    @click.option("--search", help="Only prompts whose text contains this (case-insensitive).")
    @click.option("--limit", type=int, help="At most this many prompts (ordered by id).")
    @wraps(command)
    def wrapper(*args, source, tag, search, limit, **kwargs):
        return command(*args, selection=PromptSelection(source, tag, search, limit), **kwargs)

    return wrapper


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", type=click.Path(dir_okay=False), default=lambda: str(default_db_path()),
              show_default="./workbench.duckdb or $WORKBENCH_DB", help="The store file.")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait while another process holds the store.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.version_option(package_name="dpo-workbench")
@click.pass_context
def cli(ctx: click.Context, db: str, timeout: float, quiet: bool) -> None:
    """DPO Workbench: reward models, Best-of-N sampling, curation and DPO export on one store.

    \b
    Example:
      workbench --db t.duckdb import ../shared/data/hh-rlhf-harmless-1800.jsonl --skip-invalid
      workbench --db t.duckdb stats --json
      workbench --db t.duckdb export dpo.jsonl --schema trl
    """
    if quiet:  # transformers reads this when it is first imported, which happens after this point
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ctx.obj = Context(db, timeout, quiet)


def load_commands() -> click.Group:
    """The `workbench` group with every command module imported (each registers its commands)."""
    from cli import app, checks, data, demo, dpo, generate, judge, review, rm, rounds, serve  # noqa: F401

    return cli


def main() -> None:
    """The `workbench` console script."""
    load_commands()(prog_name="workbench")


if __name__ == "__main__":
    sys.exit(main())
