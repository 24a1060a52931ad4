"""Human review: `review queue/list/export/import/add-user` and `agreement`."""

from __future__ import annotations

import click

from cli import Context, cli, emit_json, pass_ctx
from workbench.review.queue import DEFAULT_QUEUE, SOURCES, UNBIASED_NOTE


@cli.group("review")
def review_group() -> None:
    """Human review queues (labelled in the app's Review tab, or elsewhere via export/import)."""


@review_group.command("queue")
@click.option("--source", type=click.Choice(SOURCES), required=True,
              help="Which pairs: lowest-margin, rm-disagreement (two reward models order them differently), "
                   "judge-vs-rm, judge-inconsistent (a judge's verdict changed with the order), random-audit "
                   "(uniform; the only source whose error rate is an unbiased estimate).")
@click.option("--size", type=int, required=True, help="Pairs to add (those already in the queue are not added again).")
@click.option("--queue", default=DEFAULT_QUEUE, show_default=True, help="The queue's name.")
@click.option("--overlap", type=int, default=1, show_default=True,
              help="Annotators per item (each item is shown to k annotators, never twice to one).")
@click.option("--labeler", "labelers", multiple=True,
              help="Only pairs of these labelers (NAME, NAME@VERSION or id; repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Order of ties and of the audit sample.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def review_queue(ctx: Context, source, size, queue, overlap, labelers, seed, as_json) -> None:
    """Fill a review queue from a named source.

    \b
    Example:
      workbench review queue --source random-audit --size 100 --queue audit --overlap 2
      workbench review queue --source rm-disagreement --size 50 --labeler rm-a --labeler rm-b
    """
    from workbench.review.queue import fill_queue

    result = fill_queue(ctx.store, queue, source, size=size, overlap=overlap, seed=seed,
                        labelers=list(labelers) or None)
    if as_json:
        emit_json(result.as_dict())
        return
    click.echo(f"Added {result.added} pairs from {source} to queue '{queue}' (overlap {overlap}).")
    if result.note:
        click.echo(result.note)
    if source == "random-audit":
        click.echo(UNBIASED_NOTE)


@review_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def review_list(ctx: Context, as_json) -> None:
    """The review queues: items, labels, items still open.

    \b
    Example:
      workbench review list --json
    """
    from workbench.store import queries

    with ctx.store.connect() as con:
        rows = queries.review_queues(con)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['queue']}: {row['items']} items, {row['labels']} labels, {row['open']} open")


@review_group.command("add-user")
@click.argument("users_file", type=click.Path(dir_okay=False))
@click.argument("name")
@click.password_option(help="The user's password (asked for when not given; $WORKBENCH_REVIEW_PASSWORD works too).",
                       envvar="WORKBENCH_REVIEW_PASSWORD")
def review_add_user(users_file, name, password) -> None:
    """Add a user to a users file for `workbench ui --users FILE` (or change its password).

    The file holds `name:scrypt$...` lines: salted hashes, never passwords.

    \b
    Example:
      workbench review add-user users.txt alice
      workbench ui --users users.txt
    """
    from workbench.review.users import add_user

    new = add_user(users_file, name, password)
    click.echo(f"{'Added' if new else 'Changed the password of'} {name} in {users_file}.")


@review_group.command("export")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--queue", help="Only this queue (default: every queue).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def review_export(ctx: Context, out, queue, as_json) -> None:
    """Write review queues and their labels as JSON Lines (one item per line, with the store's id).

    \b
    Example:
      workbench review export audit.jsonl --queue audit
    """
    from workbench.review.transfer import export_review

    result = export_review(ctx.store, out, queue)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"Wrote {result.items} items and {result.labels} labels to {result.path}.")


@review_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def review_import(ctx: Context, file, as_json) -> None:
    """Bring back a review export (labelled here or in another tool): all or nothing, same store only.

    \b
    Example:
      workbench review import audit-labelled.jsonl
    """
    from workbench.review.transfer import import_review

    result = import_review(ctx.store, file)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"Imported {result.items} items ({result.new_items} new) and {result.labels} labels from {file}.")


@cli.command("agreement")
@click.option("--queue", help="Only this review queue (default: every queue).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def agreement_command(ctx: Context, queue, as_json) -> None:
    """Agreement between annotators (Cohen's kappa, Krippendorff's alpha), each reward model and judge
    against the human majority (accuracy, 95% CI, per queue source), and the disputed items.

    \b
    Example:
      workbench agreement --json
      workbench agreement --queue audit
    """
    from workbench.review.agreement import agreement_report

    report = agreement_report(ctx.store, queue)
    if as_json:
        emit_json(report)
        return
    for line in agreement_lines(report):
        click.echo(line)


def agreement_lines(report: dict) -> list[str]:
    between = report["between_annotators"]
    lines = [f"{between['votes']} votes by {len(between['annotators'])} annotators on {between['items']} items."]
    if between["method"]:
        value = "undefined (one category throughout)" if between["value"] is None else f"{between['value']:.4f}"
        lines.append(f"{between['method'].replace('_', ' ')}: {value}")
    for pair in between["pairwise"] if between["method"] == "krippendorff_alpha" else []:
        kappa = "n/a" if pair["cohen_kappa"] is None else f"{pair['cohen_kappa']:.4f}"
        lines.append(f"  kappa {pair['annotators'][0]} / {pair['annotators'][1]}: {kappa} on {pair['items']} items")
    for row in report["labelers"]:
        low, high = row["ci95"]
        lines.append(f"{row['labeler']} ({row['kind']}) vs human majority, {row['source']}: "
                     f"{row['accuracy']:.1%} of {row['pairs']} [95% CI {low:.1%}-{high:.1%}]")
    for row in report["judge_position_consistency"] or []:
        lines.append(f"{row['judge']} position consistency: {row['consistency']:.1%} of {row['pairs']} pairs")
    lines.append(f"{len(report['disputed'])} disputed items.")
    lines.append(report["note"])
    return lines
