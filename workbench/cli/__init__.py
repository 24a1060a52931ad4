"""The `workbench` command line: a thin layer over the library.

Each command's body calls one library function and turns its errors into a one-line message
with a non-zero exit. Global options (`--db`, `--timeout`, `--quiet`) come before the command.
"""

from __future__ import annotations

import json
import os
import sys

import click

from engine.errors import EngineError
from workbench.errors import WorkbenchError
from workbench.store import Store, default_db_path


class _Group(click.Group):
    """Turns user errors from any subcommand into a clean one-line message (exit 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (WorkbenchError, EngineError) as error:
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


pass_ctx = click.make_pass_decorator(Context)


def emit_json(value) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def pair_filter_options(rm_flag: str = "--rm"):
    """Options that select stored pairs, as `workbench export` does; the command receives `spec`
    (an ExportSpec, no limit). `rm_flag` names the option for the labelling reward model."""
    from functools import wraps

    from workbench.export import LABELS, ExportSpec

    def decorate(command):
        @click.option("--source", help="Only pairs whose prompt came from this source.")
        @click.option("--label", type=click.Choice(LABELS), help="Only human-labelled or only RM-labelled pairs.")
        @click.option(rm_flag, "labeler", help="Only pairs labelled by this reward model (NAME, NAME@VERSION, id).")
        @click.option("--strategy", help="Only pairs built with this strategy.")
        @click.option("--tag", help="Only prompts with this tag.")
        @click.option("--min-margin", type=float, help="Only pairs with at least this reward margin.")
        @click.option("--min-score", type=float, help="Both replies scored at least this.")
        @click.option("--max-score", type=float, help="Both replies scored at most this.")
        @click.option("--min-chars", type=int, help="Both replies at least this many characters.")
        @click.option("--max-chars", type=int, help="Both replies at most this many characters.")
        @click.option("--exclude-flagged", is_flag=True, help="Drop pairs with a truncated or repetitive reply.")
        @wraps(command)
        def wrapper(*args, source, label, labeler, strategy, tag, min_margin, min_score, max_score, min_chars,
                    max_chars, exclude_flagged, **kwargs):
            spec = ExportSpec(source=source, label=label, rm=labeler, strategy=strategy, tag=tag,
                              min_margin=min_margin, min_score=min_score, max_score=max_score,
                              min_chars=min_chars, max_chars=max_chars, exclude_flagged=exclude_flagged)
            return command(*args, spec=spec, **kwargs)

        return wrapper

    return decorate


def selection_options(command):
    """Options that select prompts; the command receives them as `selection` (a PromptSelection)."""
    from functools import wraps

    from workbench.selection import PromptSelection

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
    from workbench.cli import app, data, demo, generate, rm, serve  # noqa: F401

    return cli


def main() -> None:
    load_commands()(prog_name="workbench")


if __name__ == "__main__":
    sys.exit(main())
