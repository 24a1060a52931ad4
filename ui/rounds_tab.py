"""Rounds tab: iterative DPO rounds (`workbench round`) and the ablation of a pair filter
(`workbench ablate`): per round the sample rewards, the win rate against the first policy with its
CI (raw and length-controlled), mean length, pair count and export; runs started here use the job
slots and show a live log, as Retrain's."""

from __future__ import annotations

import gradio as gr

from ui import render
from ui import rounds_steps as steps
from ui.context import AppContext
from ui.errors import user_errors
from workbench.runtime import commands


def build(ctx: AppContext) -> dict:
    gr.Markdown("Each round samples fresh prompts from the current policy, scores and pairs the replies, trains "
                "the next policy with DPO and evaluates it against the first policy on held-out prompts.")
    table = gr.Dataframe(label="Rounds (win rates with 95% bootstrap CIs)", interactive=False, elem_id="rounds-table")
    plot = gr.LinePlot(x="reward", y="share", color="round", title="Reward of each round's samples", height=240)
    ablation = gr.Dataframe(label="Ablation: curated pairs vs baseline (same start, hyper-parameters, pair count)",
                            interactive=False, elem_id="rounds-ablation")
    with gr.Row():
        rm = gr.Textbox(label="Labeler reward model", placeholder="NAME")
        heldout = gr.Textbox(label="Held-out reward model", placeholder="optional")
        source = gr.Textbox(label="Prompt source", placeholder="any")
    with gr.Row():
        prompts = gr.Number(label="Prompts per round", value=200, precision=0)
        eval_prompts = gr.Number(label="Evaluation prompts", value=200, precision=0)
        n = gr.Number(label="Samples per prompt", value=4, precision=0, minimum=1, maximum=commands.MAX_N)
        max_new_tokens = gr.Number(label="Max new tokens", value=64, precision=0, minimum=1,
                                   maximum=commands.MAX_NEW_TOKENS)
        max_steps = gr.Textbox(label="DPO max steps", placeholder="one epoch")
        lr = gr.Textbox(label="DPO learning rate", placeholder="default")
        margin = gr.Textbox(label="Ablation: curated minimum margin", placeholder="e.g. 1.0")
    with gr.Row():
        run_round = gr.Button("Run a round", variant="primary")
        run_ablation = gr.Button("Ablate the last round")
        cancel = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(elem_id="rounds-progress")
    with gr.Accordion("Log", open=True):
        log = gr.Textbox(lines=12, max_lines=12, show_label=False, autoscroll=True)
    job = gr.State(None)
    timer = gr.Timer(1.0, active=False)
    settings = [rm, heldout, source, prompts, eval_prompts, n, max_new_tokens, max_steps, lr, margin]

    @user_errors
    def load():
        return steps.rounds_table(ctx), steps.reward_distribution(ctx), steps.ablation_table(ctx)

    @user_errors
    def start(kind, current, *values):
        started = steps.start(ctx, current, kind, values)
        return started, render.job_progress(steps.job_status(ctx, started)), gr.Timer(active=True)

    @user_errors
    def poll(current):
        if not current:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
        status = steps.job_status(ctx, current)
        if not status.done:
            return render.job_progress(status), status.log, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (render.job_progress(status), status.log, *load(), gr.Timer(active=False))

    @user_errors
    def stop(current):
        if current:
            ctx.jobs.get(current.id).cancel()
            gr.Info("Cancelling the running job.")

    run_round.click(lambda current, *v: start("round", current, *v), [job, *settings], [job, progress, timer],
                    api_name="round_start")
    run_ablation.click(lambda current, *v: start("ablate", current, *v), [job, *settings], [job, progress, timer],
                       api_name="ablate_start")
    timer.tick(poll, job, [progress, log, table, plot, ablation, timer], api_visibility="private")
    cancel.click(stop, job, None, api_name="rounds_cancel")

    def refresh_on(listener) -> None:
        listener(load, None, [table, plot, ablation], api_visibility="private")

    return {"refresh_on": refresh_on}
