"""Commands that run models over the store: sample, score, bon."""

from __future__ import annotations

import os

import click

from engine.precision import PRECISIONS
from cli import Context, cli, emit_json, pass_ctx, selection_options
from cli.endpoint_options import endpoint_options, prompt_template_option

policy_endpoint_options = endpoint_options(
    ("chat", "completions"), "chat", "With --endpoint: /v1/chat/completions, or /v1/completions (text prompts).")


def sampling_options(command):
    """The policy and sampling options shared by `sample` and `bon`."""
    for option in reversed([
        click.option("--policy", default="smollm2", show_default=True,
                     help="Policy: a Hugging Face directory, a .gguf file, or smollm2."),
        click.option("--n", type=int, default=4, show_default=True, help="Samples per prompt."),
        click.option("--temperature", type=float, default=0.8, show_default=True, help="0 means greedy."),
        click.option("--top-p", type=float, default=0.95, show_default=True),
        click.option("--max-new-tokens", type=int, default=128, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Run seed; each sample's seed derives from it, the prompt id and the sample index."),
        click.option("--batch-size", type=int, default=64, show_default=True, help="Sample rows per forward pass."),
        click.option("--backend", type=click.Choice(["torch", "vllm"]), default="torch", show_default=True,
                     help="vllm needs a CUDA machine with vLLM installed."),
    ]):
        command = option(command)
    return command


def _params(temperature, top_p, max_new_tokens, seed):
    from engine.data import SamplingParams

    return SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)


@cli.command("sample")
@sampling_options
@policy_endpoint_options
@prompt_template_option
@selection_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def sample_command(ctx: Context, policy, n, temperature, top_p, max_new_tokens, seed, batch_size, backend,
                   served, selection, as_json) -> None:
    """Generate N responses for each selected prompt; the same command resumes an interrupted run.

    \b
    Example:
      workbench import prompts.jsonl --format prompts
      workbench sample --policy smollm2 --n 4 --max-new-tokens 96 --limit 20
      workbench sample --endpoint http://gpu1:8000 --endpoint http://gpu2:8000 --model Qwen/Qwen2.5-7B-Instruct --n 8
    """
    params = _params(temperature, top_p, max_new_tokens, seed)
    with ctx.job_slot("sample"):
        if served is not None:
            from workbench.endpoints.sampling import sample_from_endpoints

            result = sample_from_endpoints(ctx.store, served, n, params=params, selection=selection,
                                           progress=ctx.progress)
        else:
            from workbench.generate.sampling import sample_responses

            result = sample_responses(ctx.store, policy, n, params=params, selection=selection,
                                      batch_size=batch_size, backend=backend, progress=ctx.progress)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"Run {result.run_id}: {result.generated} new samples ({result.total} in all for "
                   f"{result.prompts} prompts x {result.n}) in {result.seconds} s.")


trust_remote_code_option = click.option(
    "--trust-remote-code", is_flag=True,
    help="Let a reward model that ships its own Python code (InternLM2) run it. Only with this flag.")


def scoring_options(command):
    """The scoring options shared by `score` and `bon`."""
    for option in reversed([
        click.option("--max-length", type=int, default=2048, show_default=True,
                     help="Tokens per conversation; longer ones keep their end."),
        click.option("--max-tokens-per-batch", type=int, default=8192, show_default=True,
                     help="Tokens packed into one forward pass."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="bf16 autocast or fp32; auto = bf16 on GPUs and CPUs with AVX512-BF16/AMX, else fp32."),
        trust_remote_code_option,
    ]):
        command = option(command)
    return command


@cli.command("score")
@click.option("--rm", help="Reward model: a directory, NAME, NAME@VERSION or id. With --endpoint: the name "
                           "its scores go under (default MODEL-at-HOST-PORT).")
@selection_options
@click.option("--generation-run", help="Only responses of this generation run.")
@scoring_options
@click.option("--shard", help="RANK/WORLD: score only this process's share (several processes split the work). "
                             "Default: RANK/WORLD_SIZE under torchrun, else 0/1.")
@endpoint_options(("workbench", "openrlhf", "vllm"), "workbench",
                  "With --endpoint: `workbench serve`'s /v1/score, OpenRLHF's /get_reward, or vLLM's /pooling.")
@prompt_template_option
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="With --endpoint: conversations per request (workbench, openrlhf).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def score_command(ctx: Context, rm, selection, generation_run, max_length, max_tokens_per_batch, precision,
                  trust_remote_code, shard, served, batch_size, as_json) -> None:
    """Score stored responses with a reward model (batched, length-sorted, packed; resumable).

    \b
    Example:
      workbench score --rm runs/rm-hh --source hh-rlhf-harmless-1800
      workbench score --rm ./internlm2-1_8b-reward --trust-remote-code
      workbench score --rm demo-rm --shard 0/2 & workbench score --rm demo-rm --shard 1/2
      torchrun --nproc_per_node=2 -m workbench score --rm demo-rm
      workbench score --endpoint http://gpu3:8100 --api workbench --api-key-env RM_KEY
    """
    if served is not None:
        from workbench.endpoints.scoring import score_with_endpoint

        with ctx.job_slot("score"):
            result = score_with_endpoint(ctx.store, served, name=rm, selection=selection,
                                         generation_run=generation_run, batch_size=batch_size, progress=ctx.progress)
        _echo_scored(result, "", as_json)
        return
    if not rm:
        raise click.UsageError("give --rm (a reward model), or --endpoint URL (a reward server)")
    from workbench.generate.scoring import score_responses

    rank, world = _shard(shard)
    with ctx.job_slot("score", shared=world > 1):  # the shards of one run share it
        result = score_responses(ctx.store, rm, selection=selection, generation_run=generation_run,
                                 max_length=max_length, max_tokens_per_batch=max_tokens_per_batch,
                                 precision=precision, shard=(rank, world), progress=ctx.progress,
                                 trust_remote_code=trust_remote_code)
    _echo_scored(result, f" (shard {rank}/{world})" if world > 1 else "", as_json)


def _echo_scored(result, part: str, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"Scored {result.scored} responses with {result.rm}{part} ({result.already_scored} were "
                   f"already scored) in {result.seconds} s.")


def _shard(shard: str | None) -> tuple[int, int]:
    """--shard RANK/WORLD; without it, torchrun's RANK and WORLD_SIZE, so each process takes its own share.

    Sharded scoring needs no process group: the shards are disjoint by response id and every
    insert skips rows already in the store, so the store alone coordinates the processes.
    """
    if shard is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        rank, world = (int(x) for x in shard.split("/"))
    except ValueError:
        raise click.BadParameter("use RANK/WORLD, e.g. 0/2", param_hint="--shard") from None
    return rank, world


@cli.command("bon")
@sampling_options
@policy_endpoint_options
@prompt_template_option
@click.option("--rm", required=True, help="Reward model that picks the best of the N.")
@selection_options
@scoring_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def bon_command(ctx: Context, policy, n, temperature, top_p, max_new_tokens, seed, batch_size, backend, served, rm,
                selection, max_length, max_tokens_per_batch, precision, trust_remote_code, as_json) -> None:
    """Best-of-N: sample N responses per prompt, score them, mark each prompt's best.

    \b
    Example:
      workbench bon --policy smollm2 --rm demo-rm --n 8 --limit 10
      workbench bon --endpoint http://gpu1:8000 --endpoint http://gpu2:8000 --rm demo-rm --n 8 --concurrency 64
    """
    from workbench.generate.bon import best_of_n

    with ctx.job_slot("bon"):
        result = best_of_n(ctx.store, policy, rm, n, params=_params(temperature, top_p, max_new_tokens, seed),
                           selection=selection, batch_size=batch_size, backend=backend, progress=ctx.progress,
                           max_length=max_length, max_tokens_per_batch=max_tokens_per_batch, precision=precision,
                           trust_remote_code=trust_remote_code, served=served)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"Sampled {result.sampling.total} responses (run {result.sampling.run_id}), scored "
                   f"{result.scoring.scored}, picked the best for {result.picks} prompts.")
