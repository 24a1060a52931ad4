"""`workbench rm ...`: train, evaluate, export and list reward models."""

from __future__ import annotations

import contextlib
import os

import click

from engine.precision import PRECISIONS
from engine.recipes import RECIPES, recipe_settings
from engine.rm_formats import FORMATS
from engine.train_config import TrainConfig
from cli import Context, cli, dataclass_options, emit_json, pair_filter_options, pass_ctx
from cli.generate import trust_remote_code_option
from workbench.ingest.formats import FORMATS as IMPORT_FORMATS

_EXPLICIT = ("base", "out_dir")  # declared by hand below, with their own help
# every TrainConfig field but those; None when not given, so --recipe can fill the rest
config_options = dataclass_options(TrainConfig, skip=_EXPLICIT, explicit_only=True)


def store_pairs(from_store: bool, pair_filter):
    """The store filter when --from-store is given; filters without it are a usage error."""
    if from_store:
        return pair_filter
    if pair_filter != type(pair_filter)():
        raise click.UsageError("pair filters (--source, --min-margin, ...) need --from-store")
    return None


@cli.group("rm")
def rm_group() -> None:
    """Reward models: train, eval, export, list, register."""


@rm_group.command("train")
@click.option("--data", multiple=True, type=click.Path(exists=True),
              help="Pairs from a file any `workbench import` format reads (repeatable).")
@click.option("--format", "fmt", default="auto", show_default=True, help="Format of --data files.")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid records in --data instead of refusing.")
@click.option("--from-store", is_flag=True, help="Train on the store's pairs, selected like `workbench export`.")
@pair_filter_options("--pairs-rm")
@click.option("--base", default="smollm2", show_default=True, help="Backbone: HF directory, .gguf file, or smollm2.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output: an HF model directory, plus checkpoints/ and metrics.jsonl.")
@click.option("--name", help="Name in the store (default: the --out directory's name).")
@click.option("--eval-fraction", type=float, default=0.1, show_default=True,
              help="Share of prompts held out for evaluation (by a hash of the prompt).")
@click.option("--eval-data", multiple=True, type=click.Path(exists=True),
              help="Evaluate on these pairs instead of a held-out share.")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out.")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None,
              help="A measured recipe; explicit options override its settings. Default: head-only, unless "
                   "--lora, --qlora, --freeze-layers or --head-only pick the mode themselves, or under "
                   "torchrun (several processes: the backbone is trained).")
@click.option("--allow-pickle", is_flag=True,
              help="With --resume: read checkpoint files that need unpickling (can run code: trusted files only).")
@config_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def rm_train(ctx: Context, data, fmt, skip_invalid, from_store, pair_filter, base, out_dir, name, eval_fraction, eval_data,
             resume, allow_pickle, recipe, as_json, **overrides) -> None:
    """Train a reward model (InternLM2 recipe: reward token, value head, focal ranking + log barrier).

    Without recipe options it runs the best recipe measured on CPU (--recipe head-only: frozen
    backbone, value head probed then trained, backbone features cached so retrains take seconds).
    Runs as a plain process, on one GPU, or under torchrun with several processes.

    \b
    Example:
      workbench rm train --data ../shared/data/hh-rlhf-harmless-1800.jsonl --skip-invalid \\
          --base smollm2 --out runs/rm-hh
      workbench rm train --data pairs.jsonl --recipe lora --epochs 2 --out runs/rm-lora
      workbench rm train --from-store --label rm --min-margin 0.5 --base smollm2 --out runs/rm-v2
      torchrun --nproc_per_node=2 -m workbench rm train --data pairs.jsonl --base smollm2 --out runs/rm
    """
    from workbench.models.training import train_rm

    pair_filter = store_pairs(from_store, pair_filter)
    settings = recipe_settings(recipe, {k: v for k, v in overrides.items() if v is not None},
                               world_size=int(os.environ.get("WORLD_SIZE", "1")))
    config = TrainConfig(base=base, out_dir=out_dir, **settings)
    # Under torchrun only rank 0 opens the store (DuckDB allows one process per file).
    store = ctx.store if int(os.environ.get("RANK", "0")) == 0 else None
    with ctx.job_slot("train") if store is not None else contextlib.nullcontext():  # rank 0 holds it for all
        summary = train_rm(store, config, data=data, pair_filter=pair_filter, fmt=fmt,
                           skip_invalid=skip_invalid, eval_fraction=eval_fraction, eval_data=eval_data, name=name,
                           resume=resume, progress=ctx.progress, allow_pickle=allow_pickle)
    if store is None:
        return
    if as_json:
        emit_json(summary)
        return
    line = f"Trained {summary['steps']} steps on {summary['train_pairs']} pairs into {summary['out_dir']}"
    if summary.get("eval"):
        e = summary["eval"]
        line += (f"; held-out accuracy {e['accuracy']:.3f} on {e['n']} pairs "
                 f"(longer-wins baseline {e['length_baseline']:.3f})")
    click.echo(line + ".")


@rm_group.command("eval")
@click.option("--rm", "rm_ref", required=True, help="Reward model: directory, NAME, NAME@VERSION or id.")
@click.option("--data", multiple=True, type=click.Path(exists=True), help="Labelled pairs to evaluate on.")
@click.option("--format", "fmt", type=click.Choice(("auto", *IMPORT_FORMATS, "rewardbench")), default="auto",
              show_default=True, help="Format of --data: any `workbench import` pair format, or rewardbench (prompt, chosen, "
                   "rejected [a list for best-of-k], subset: accuracy per subset, section and overall).")
@click.option("--skip-invalid", is_flag=True)
@click.option("--from-store", is_flag=True, help="Evaluate on the store's pairs, selected like `workbench export`.")
@pair_filter_options("--pairs-rm")
@click.option("--compared-with", multiple=True, metavar="MODEL",
              help="A model this one is compared with: pairs it labelled are left out too, so both are graded "
                   "on the same pairs and neither on its own labels. Repeatable.")
@click.option("--max-length", type=int, default=1024, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="bf16 autocast or fp32; auto = bf16 on GPUs and CPUs with AVX512-BF16/AMX, else fp32.")
@trust_remote_code_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def rm_eval(ctx: Context, rm_ref, data, fmt, skip_invalid, from_store, pair_filter, compared_with, max_length,
            precision, trust_remote_code, as_json) -> None:
    """Pairwise accuracy (ties count half), mean margin and the longer-reply-wins baseline.

    Pairs the model (or a --compared-with model) labelled in the store are left out: a model graded on
    its own labels scores 1.0 by construction. With none left, the evaluation is refused.

    \b
    Example:
      workbench rm eval --rm runs/rm-hh --data runs/rm-hh/heldout_pairs.jsonl --json
      workbench rm eval --rm demo-rm --data workbench/data/rewardbench_sample.jsonl --format rewardbench
      workbench rm eval --rm my-trl-rm --data pairs.jsonl --precision fp32
      workbench rm eval --rm demo-rm-v2 --compared-with demo-rm --from-store --label human
    """
    pair_filter = store_pairs(from_store, pair_filter)
    with ctx.job_slot("eval"):
        _rm_eval(ctx, rm_ref, data, fmt, skip_invalid, pair_filter, compared_with, max_length, precision,
                 trust_remote_code, as_json)


def _rm_eval(ctx: Context, rm_ref, data, fmt, skip_invalid, pair_filter, compared_with, max_length, precision,
             trust_remote_code, as_json) -> None:
    from workbench.models.evaluation import evaluate_reward_model, evaluate_rewardbench

    if fmt == "rewardbench":
        if pair_filter is not None:
            raise click.UsageError("--format rewardbench reads --data files, not --from-store")
        from workbench.models.rewardbench import format_report

        report = evaluate_rewardbench(ctx.store, rm_ref, data, skip_invalid=skip_invalid, max_length=max_length,
                                      precision=precision, trust_remote_code=trust_remote_code,
                                      progress=ctx.progress)
        if as_json:
            emit_json(report)
        else:
            click.echo(format_report(report))
        return
    result = evaluate_reward_model(ctx.store, rm_ref, data=data, pair_filter=pair_filter, skip_invalid=skip_invalid,
                                   max_length=max_length, progress=ctx.progress, fmt=fmt, precision=precision,
                                   trust_remote_code=trust_remote_code, compared_with=compared_with)
    if as_json:
        emit_json(result)
    else:
        if result["excluded_own_labels"]:
            click.echo(f"left out {result['excluded_own_labels']} pairs labelled by "
                       f"{', '.join(result['labelled_by_compared'])} (a model being evaluated)")
        click.echo(f"n={result['n']} accuracy={result['accuracy']:.4f} mean_margin={result['mean_margin']:.4f} "
                   f"length_baseline={result['length_baseline']:.4f} precision={result['precision']}")


@rm_group.command("export")
@click.option("--rm", "source", required=True, type=click.Path(exists=True),
              help="A training output, a checkpoint directory, or a LoRA adapter directory.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where to write the HF directory.")
@pass_ctx
def rm_export(ctx: Context, source, out) -> None:
    """Write a standard HF sequence-classification directory (LoRA merged) from a run or checkpoint.

    \b
    Example:
      workbench rm export --rm runs/rm-hh/checkpoints/step-000100 --out exported/rm-hh-100
    """
    from engine.export import export_reward_model

    path = export_reward_model(source, out)
    click.echo(f"Wrote {path}: load it with AutoModelForSequenceClassification.from_pretrained('{path}').")


@rm_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def rm_list(ctx: Context, as_json) -> None:
    """Reward models the store knows: format, pooling, and how many responses each has scored.

    \b
    Example:
      workbench rm list
    """
    from workbench.models.reward_models import list_with_formats

    models = list_with_formats(ctx.store)
    if as_json:
        emit_json(models)
        return
    for m in models:
        label = "" if m["label_index"] is None else f" label={m['label_index']}"
        click.echo(f"{m['name']}@{m['version']}  {m['rm_id'][:12]}  {m['format']}/{m['pooling']}{label}  "
                   f"scores={m['n_scores']}  {m['path'] or '(imported scores)'}")


@rm_group.command("register")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--name", help="Name in the store (default: the directory's name).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="workbench (rm train), hf (a *ForSequenceClassification, e.g. TRL), openrlhf, internlm2; "
                   "auto reads config.json.")
@click.option("--label-index", type=int, help="Which output of a multi-objective head is the reward.")
@trust_remote_code_option
@pass_ctx
def rm_register(ctx: Context, path, name, fmt, label_index, trust_remote_code) -> None:
    """Register a reward-model directory under a name (same weights: same entry), after checking it.

    \b
    Example:
      workbench rm register runs/rm-hh --name hh
      workbench rm register ./trl-reward-model --name trl-rm
      workbench rm register ./openrlhf-rm --format openrlhf --name orm
      workbench rm register ./multi-head-rm --label-index 2 --name helpfulness
      workbench rm register ./internlm2-1_8b-reward --trust-remote-code --name internlm2
    """
    from workbench.models.reward_models import register_reward_model

    model = register_reward_model(ctx.store, path, name=name, fmt=fmt, label_index=label_index,
                                  trust_remote_code=trust_remote_code)
    spec = model.reward_format()
    click.echo(f"{model.label} -> {model.path} ({spec.format}, pooled at {spec.pooling})")


@rm_group.command("compare")
@click.argument("rm_a")
@click.argument("rm_b")
@click.option("--source", help="Only responses to prompts from this source.")
@click.option("--top", type=int, default=10, show_default=True, help="How many most-disagreeing pairs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def rm_compare(ctx: Context, rm_a, rm_b, source, top, as_json) -> None:
    """Compare two reward models on the responses both scored: rank correlations overall and per
    prompt, same-prompt pairs ordered alike, length correlations, the most-disagreeing pairs.

    \b
    Example:
      workbench rm compare demo-rm demo-rm-v2 --top 5
      workbench rm compare demo-rm@1 demo-rm@2 --source demo-prompts --json
    """
    from workbench.curate.browse import shorten
    from workbench.models.compare import compare_reward_models, summary_rows

    result = compare_reward_models(ctx.store, rm_a, rm_b, source=source, top=top)
    if as_json:
        emit_json(result)
        return
    click.echo(f"A = {result['a']}, B = {result['b']}")
    for measure, value in summary_rows(result):
        click.echo(f"{measure:<44}{'n/a' if value is None else value}")
    for n, d in enumerate(result["disagreements"], 1):
        click.echo(f"\n#{n} prompt {d['prompt_id']} (firmness {d['firmness']:.3f}): {shorten(d['prompt'], 100)}")
        click.echo(f"  A prefers ({d['a_scores'][0]:.4g} > {d['a_scores'][1]:.4g}): {shorten(d['a_prefers_text'], 100)}")
        click.echo(f"  B prefers ({d['b_scores'][1]:.4g} > {d['b_scores'][0]:.4g}): {shorten(d['b_prefers_text'], 100)}")
