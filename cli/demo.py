"""`workbench demo`: build a populated demo store with SmolLM2 and open the app."""

from __future__ import annotations

from pathlib import Path

import click

from cli import Context, cli, pass_ctx


@cli.command("demo")
@click.option("--work-dir", type=click.Path(file_okay=False), default="demo", show_default=True,
              help="Where the reward model, contrastive pairs and export go.")
@click.option("--n", type=int, default=4, show_default=True, help="Samples per prompt.")
@click.option("--max-new-tokens", type=int, default=192, show_default=True,
              help="Cap on each sampled reply (the demo's prompts ask for two or three sentences).")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="Train the first reward model on this preference file (e.g. hh-rlhf) instead of "
                   "contrastive pairs made by the policy.")
@click.option("--epochs", type=float, default=2.0, show_default=True, help="Reward-model training epochs.")
@click.option("--no-app", is_flag=True, help="Build the store but do not open the app.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=7860, show_default=True)
@pass_ctx
def demo_command(ctx: Context, work_dir, n, max_new_tokens, pairs_file, epochs, no_app, host, port) -> None:
    """Sample, train a reward model, score, pair, export - then open the app. Safe to repeat.

    \b
    Example:
      workbench demo
      workbench demo --pairs ../shared/data/hh-rlhf-harmless-1800.jsonl
    """
    from workbench.runtime.loopback import is_loopback
    from workbench.demo import DemoSettings, run_demo

    if not no_app and not is_loopback(host):  # refused before the long build, not after
        raise click.BadParameter(f"the demo app has no login, so it serves on loopback only: run with --no-app, "
                                 f"then `workbench ui --host {host} --auth USER:PASS`", param_hint="--host")
    settings = DemoSettings(work_dir=Path(work_dir), n=n, max_new_tokens=max_new_tokens, pairs_file=pairs_file,
                            epochs=epochs)
    result = run_demo(ctx.store, settings, progress=ctx.progress)
    click.echo(f"\nDemo store ready in {result['timings']['total_before_app']} s: {ctx.store.path}")
    if no_app:
        return
    from ui.app import launch

    click.echo("[7/7] Opening the app")
    launch(ctx.store, host=host, port=port)
