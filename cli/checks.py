"""Commands that check the data before it is trained on: decontaminate, explain."""

from __future__ import annotations

import click

from cli import Context, cli, emit_json, pair_filter_options, pass_ctx


@cli.command("decontaminate")
@click.option("--against", "against", multiple=True, required=True, type=click.Path(exists=True),
              help="A benchmark's prompts: JSONL/JSON/Parquet/datasets dir of any import format or "
                   "`prompt`/`question`/`instruction` rows (repeatable; one benchmark each).")
@click.option("--name", "names", multiple=True,
              help="The benchmark's name (one per --against; default: the file's name).")
@click.option("--ngram", type=int, default=13, show_default=True, help="Words in a matching n-gram.")
@click.option("--replies", is_flag=True, help="Check the stored replies too, not only the prompts.")
@click.option("--near", type=float,
              help="Second pass: also flag prompts holding at least this share of a benchmark prompt's 5-grams.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def decontaminate_command(ctx: Context, against, names, ngram, replies, near, as_json) -> None:
    """Flag stored prompts (and replies) that contain a benchmark's prompts.

    A match is a shared run of --ngram words after normalisation (case, accents and punctuation
    ignored). Flags carry the benchmark's name and the matching span; `export --exclude-contaminated`
    (and the app's Curate tab) drops pairs that touch one. Rerunning a benchmark replaces its flags.

    \b
    Example:
      workbench decontaminate --against truthfulqa.jsonl --against gsm8k-test.parquet
      workbench export dpo.jsonl --exclude-contaminated
    """
    from workbench.curate.decontamination import decontaminate

    reports = decontaminate(ctx.store, list(against), names=list(names), ngram=ngram, replies=replies, near=near,
                            progress=ctx.progress and not as_json)
    if as_json:
        emit_json({"ngram": ngram, "benchmarks": {r.benchmark: r.as_dict() for r in reports}})
        return
    for r in reports:
        replies_part = f", {r.flagged_replies} replies" if replies else ""
        near_part = f" ({r.near_prompts} by the near pass)" if near else ""
        click.echo(f"{r.benchmark}: {r.flagged_prompts} flagged prompts{near_part}{replies_part} "
                   f"(benchmark of {r.benchmark_prompts} prompts, run {r.run_id[:12]})")
        for example in r.examples[:3]:
            click.echo(f"  {example['prompt_id'][:8]}  \"{example['span']}\"  (benchmark line {example['benchmark_line']})")


@cli.command("explain")
@click.argument("pair_id")
@pair_filter_options()
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
@pass_ctx
def explain_command(ctx: Context, pair_id, pair_filter, as_json) -> None:
    """Say why one pair is in or out of a selection, and what made it.

    PAIR_ID may be a prefix (the app shows 8 characters). The filter options are the export's:
    the pair is checked against each in order and the first that drops it is named.

    \b
    Example:
      workbench explain 3fa2b9c1 --min-margin 0.5 --exclude-flagged
    """
    from workbench.curate.explain import explain_pair

    account = explain_pair(ctx.store, pair_id, pair_filter)
    if as_json:
        emit_json(account)
        return
    pair = account["pair"]
    if account["verdict"] == "in":
        click.echo(f"Pair {account['pair_id']} is IN the selection ({account['filter']}).")
    else:
        dropped = account["dropped_by"]
        click.echo(f"Pair {account['pair_id']} is OUT: dropped by {dropped['step']}: {dropped['why']}.")
    for check in account["checks"]:
        click.echo(f"  {'pass' if check['passes'] else 'FAIL'}  {check['why']}")
    if account["note"]:
        click.echo(f"  note: {account['note']}")
    run = account["pair_run"] or {}
    click.echo(f"Labelled by {pair['labeler']} ({pair['strategy']}), margin {pair['margin']}; "
               f"pair run {run.get('run_id', '?')[:12]} ({run.get('kind')}, {run.get('status')}).")
    for role, reply in zip(("chosen", "rejected"), account["replies"]):
        scores = ", ".join(f"{s['labeler']} {s['score']:.3f}" for s in reply["scores"] or []) or "no scores"
        click.echo(f"  {role:8s} {reply['response_id'][:12]}  {reply['origin']} by run {reply['run_id'][:12]} "
                   f"({reply['run_kind']}), {reply['n_chars']} chars; scores: {scores}")
    for hit in account["contamination"]:
        where = f"reply {hit['response_id'][:12]}" if hit["response_id"] else "prompt"
        click.echo(f"  benchmark {hit['benchmark']}: {where} matches \"{hit['span']}\"")
    for vote in account["human_votes"]:
        note = f" ({vote['note']})" if vote["note"] else ""
        click.echo(f"  human review: {vote['annotator']} voted {vote['vote']} in queue {vote['queue']}{note}")


@cli.command("dedup")
@click.option("--near", type=float, default=0.8, show_default=True,
              help="Also flag prompts whose word 3-gram Jaccard similarity to an earlier prompt reaches this.")
@click.option("--exact-only", is_flag=True, help="Only prompts with the same words (no near pass).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def dedup_command(ctx: Context, near, exact_only, as_json) -> None:
    """Flag prompts that repeat an earlier one, across sources and rounds.

    Exact: the same words (case, accents, punctuation ignored). Near: MinHash-LSH candidates whose
    word 3-gram Jaccard similarity reaches --near. Each flag names the earliest prompt it repeats.

    \b
    Example:
      workbench dedup --near 0.8
    """
    from workbench.curate.dedup import find_duplicate_prompts

    report = find_duplicate_prompts(ctx.store, None if exact_only else near)
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(f"{report.exact} exact and {report.near} near duplicates among {report.prompts} prompts "
               f"(run {report.run_id[:12]}).")
    for e in report.examples[:5]:
        click.echo(f"  {e['kind']} {e['similarity']}: {e['prompt_id'][:8]} ({e['source']}) repeats "
                   f"{e['duplicate_of'][:8]} ({e['original_source']})")
