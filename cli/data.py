"""Commands on the data itself: import, stats, pairs, export, runs."""

from __future__ import annotations

import json

import click

from cli import Context, cli, emit_json, pair_filter_options, pass_ctx
from workbench.curate.combine import RULES as COMBINE_RULES
from workbench.exports.export import FORMATS as EXPORT_FORMATS
from workbench.exports.export import SCHEMAS
from workbench.ingest.formats import FORMATS as IMPORT_FORMATS
from workbench.curate.human_first import LABEL_RULES
from workbench.curate.pairs import STRATEGIES
from workbench.ingest.readers import DEFAULT_MAX_RECORD_BYTES


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(("auto",) + IMPORT_FORMATS), default="auto", show_default=True,
              help="Record format; auto detects it per file from the first records.")
@click.option("--source", help="Source name stored with the prompts (default: the first file's name).")
@click.option("--tag", "tags", multiple=True, help="Tag every imported prompt (repeatable).")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid records and write the invalid ones to a rejects file.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where --skip-invalid lists refused records (default: SOURCE.rejects.jsonl beside the store).")
@click.option("--score-name", help="Reward-model name for scores carried by Best-of-N files "
                                   "(default imported:SOURCE).")
@click.option("--max-record-bytes", type=int, default=DEFAULT_MAX_RECORD_BYTES, show_default=True,
              help="Refuse records larger than this.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@pass_ctx
def import_command(ctx: Context, files, fmt, source, tags, skip_invalid, rejects, score_name,
                   max_record_bytes, as_json) -> None:
    """Import preference pairs, Best-of-N samples or prompts (JSONL, JSON, Parquet, .gz, datasets dir).

    Formats: trl/xtuner (message lists), trl-standard (strings), hh-rlhf (transcripts),
    bon (prompt + responses [+ scores]), prompts. By default one invalid record refuses the whole
    import and the store is unchanged. Importing the same file twice changes nothing.

    \b
    Example:
      workbench --db t.duckdb import ../shared/data/hh-rlhf-harmless-1800.jsonl --skip-invalid
      workbench import samples.jsonl --format bon --score-name my-rm
    """
    from workbench.ingest.importer import import_files

    result = import_files(ctx.store, files, fmt=fmt, source=source, tags=tags, skip_invalid=skip_invalid,
                          rejects_path=rejects, score_name=score_name, max_record_bytes=max_record_bytes,
                          progress=ctx.progress)
    if as_json:
        emit_json(result.as_dict())
        return
    if result.already_imported:
        click.echo(f"Already imported (run {result.run_id}): nothing changed.")
    else:
        click.echo(f"Imported {result.valid} of {result.records} records: {result.new_prompts} new prompts, "
                   f"{result.new_responses} responses, {result.new_pairs} pairs, {result.new_scores} scores.")
    if result.rejected:
        click.echo(f"Refused {result.rejected} invalid records, listed with reasons in {result.rejects_path}.")


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def stats_command(ctx: Context, as_json: bool) -> None:
    """Counts of prompts, responses, pairs, scores (by reward model) and exports.

    \b
    Example:
      workbench --db t.duckdb stats --json
    """
    from workbench.curate.stats import store_stats

    stats = store_stats(ctx.store)
    if as_json:
        emit_json(stats)
        return
    click.echo(f"store      {stats['store']}")
    for key in ("prompts", "responses", "pairs", "reward_models", "runs", "exports"):
        click.echo(f"{key:<14}{stats[key]:>10,}")
    for name, count in stats["scores"].items():
        click.echo(f"scores by {name}: {count:,}")
    for labeler, strategies in stats["pairs_by_labeler"].items():
        for strategy, count in strategies.items():
            how = "" if strategy == labeler else f" ({strategy})"  # human pairs have strategy "human"
            click.echo(f"pairs by {labeler}{how}: {count:,}")


@cli.group("pairs")
def pairs_group() -> None:
    """Build chosen/rejected pairs from scored responses."""


@pairs_group.command("build")
@click.option("--rm", "rms", required=True, multiple=True,
              help="Reward model: NAME, NAME@VERSION, id, or directory. Repeat it with --combine.")
@click.option("--combine", type=click.Choice(COMBINE_RULES),
              help="With several --rm: mean-z (average of each model's z-scores) or agree (pairs every model "
                   "orders the same way).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="best-vs-worst", show_default=True)
@click.option("--k", type=int, help="For top-k: replies taken from each end of the ranking.")
@click.option("--min-margin", "min_margins", type=float, multiple=True,
              help="Smallest score difference kept; ties (margin 0) are always dropped [default: 0]. With "
                   "--combine agree: once for every model or once per --rm.")
@click.option("--max-length-ratio", type=float, help="Keep pairs whose token lengths are within this ratio.")
@click.option("--seed", type=int, default=0, show_default=True, help="For best-vs-random.")
@click.option("--source", help="Only prompts from this source.")
@click.option("--generation-run", help="Only responses from this generation run.")
@click.option("--labels", type=click.Choice(LABEL_RULES), default="rm", show_default=True,
              help="human-first: human review verdicts keep, flip or drop the reward model's pairs (a tie or "
                   "'both bad' drops one); the pairs are labelled human-first(RM).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pairs_build(ctx: Context, rms, combine, strategy, k, min_margins, max_length_ratio, seed, source,
                generation_run, labels, as_json) -> None:
    """Pair each prompt's scored responses by a strategy; ties and identical texts never pair.

    With several --rm and --combine, pairs come from all the models together, labelled by the
    combination (e.g. mean-z(A,B)): see docs/curation-and-export.md.

    \b
    Example:
      workbench pairs build --rm demo-rm --strategy best-vs-worst --min-margin 0.5
      workbench pairs build --rm demo-rm --strategy top-k --k 2 --max-length-ratio 1.5
      workbench pairs build --rm rm-a --rm rm-b --combine agree --min-margin 0.5 --min-margin 1.0
      workbench pairs build --rm demo-rm --labels human-first   # human review verdicts first
    """
    from workbench.curate.combine import build_combined_pairs
    from workbench.curate.human_first import build_human_first_pairs
    from workbench.curate.pairs import build_pairs

    if labels == "human-first":
        if len(rms) > 1 or combine or len(min_margins) > 1:
            raise click.UsageError("--labels human-first takes one --rm (and one --min-margin)")
        result = build_human_first_pairs(ctx.store, rms[0], strategy, k=k,
                                         min_margin=min_margins[0] if min_margins else 0.0,
                                         max_length_ratio=max_length_ratio, seed=seed, source=source,
                                         generation_run=generation_run, progress=ctx.progress)
    elif len(rms) > 1 or combine:
        if not combine:
            raise click.UsageError("several --rm need --combine mean-z or --combine agree")
        result = build_combined_pairs(ctx.store, list(rms), combine, strategy, k=k, min_margins=list(min_margins),
                                      max_length_ratio=max_length_ratio, seed=seed, source=source,
                                      generation_run=generation_run, progress=ctx.progress)
    else:
        if len(min_margins) > 1:
            raise click.UsageError("one --rm takes one --min-margin")
        result = build_pairs(ctx.store, rms[0], strategy, k=k, min_margin=min_margins[0] if min_margins else 0.0,
                             max_length_ratio=max_length_ratio, seed=seed, source=source,
                             generation_run=generation_run, progress=ctx.progress)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"{result.candidates} pairs from {result.rm} ({strategy}); {result.new_pairs} new "
                   f"(run {result.run_id}).")
        if labels == "human-first":
            click.echo(f"Human verdicts: {result.confirmed} pairs confirmed, {result.flipped} flipped, "
                       f"{result.dropped} dropped (tie or both bad).")


@cli.command("export")
@click.argument("out", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl", show_default=True)
@click.option("--schema", type=click.Choice(SCHEMAS), default="trl", show_default=True,
              help="trl/xtuner: message lists; trl-standard: strings; sft: each prompt's best reply by --rm "
                   "as `messages` rows (rejection sampling).")
@pair_filter_options()
@click.option("--top", type=int, help="For --schema sft: the best N replies per prompt [default: 1].")
@click.option("--with-scores", is_flag=True, help="Add score_chosen, score_rejected and margin columns.")
@click.option("--with-provenance", is_flag=True, help="Add ids, labeler, strategy, source and run columns.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier export at OUT (only a workbench export: one with its manifest).")
@click.option("--max-length-bias", type=float,
              help="Refuse the export if chosen and rejected lengths differ by more than this Cohen's d (e.g. 0.2).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def export_command(ctx: Context, out, fmt, schema, pair_filter, top, with_scores, with_provenance, overwrite,
                   max_length_bias, as_json) -> None:
    """Export DPO pairs that TRL's DPOTrainer and XTuner load as they are, plus a manifest.

    With --schema sft: each prompt's best reply (or --top N) by the --rm model, as the
    `messages` rows TRL's SFTTrainer reads (rejection sampling); the reply filters apply.

    \b
    Example:
      workbench --db t.duckdb export dpo.jsonl --schema trl
      workbench export dpo.parquet --format parquet --min-margin 1.0 --with-scores
      workbench export sft.jsonl --schema sft --rm demo-rm --min-score 0.5 --exclude-flagged
      workbench export dpo-hf --format hf --overwrite   # replace an earlier export there
      workbench export dpo.jsonl --exclude-contaminated --max-length-bias 0.2
    """
    from workbench.exports.export import export_pairs

    result = export_pairs(ctx.store, out, fmt=fmt, schema=schema, pair_filter=pair_filter, with_scores=with_scores,
                          with_provenance=with_provenance, top=top, overwrite=overwrite,
                          max_length_bias=max_length_bias)
    if as_json:
        emit_json(result.as_dict())
        return
    what = "rows" if schema in ("sft", "kto", "bon") else "pairs"
    click.echo(f"Wrote {result.rows} {what} to {result.path} (manifest {result.manifest_path}).")
    if result.why_dropped:
        dropped = [s for s in result.why_dropped["steps"] if s["removed"]]
        click.echo(f"Of {result.why_dropped['pairs_in_store']} pairs in the store: "
                   + ("; ".join(f"{s['removed']} dropped by {s['why']}" for s in dropped) or "none dropped") + ".")
    if result.length_bias and result.length_bias["cohens_d"] is not None:
        bias = result.length_bias
        click.echo(f"Length bias: Cohen's d {bias['cohens_d']:+.2f}; the chosen reply is the longer in "
                   f"{bias['longer_wins']:.0%} of pairs of unequal length.")


@cli.group("runs")
def runs_group() -> None:
    """What the store's runs did."""


@runs_group.command("list")
@click.option("--kind", help="import, generation, scoring, training, pairs or export.")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_ctx
def runs_list(ctx: Context, kind, limit) -> None:
    """List recent runs, newest first.

    \b
    Example:
      workbench runs list --kind import
    """
    from workbench.store import queries

    with ctx.store.connect() as con:
        runs = queries.list_runs(con, kind, limit)
    for run in runs:  # the store keeps a run's summary as JSON text: print it as the object it is
        if isinstance(run.get("summary"), str):
            run["summary"] = json.loads(run["summary"])
    emit_json(runs)
