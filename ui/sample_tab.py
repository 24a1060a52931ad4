"""Sample tab: Best-of-N on chosen prompts. The run is a `workbench bon` (or `workbench sample`)
process started through `workbench.runtime.jobs`; a timer polls its progress bar and log, and the new
responses appear in Browse as they are committed."""

from __future__ import annotations

import gradio as gr

from ui import render
from ui import sample_steps as steps
from ui.choices import model_dropdown, source_and_tag_dropdowns
from ui.context import AppContext
from ui.errors import user_errors
from ui.inputs import ANY
from ui.sample_steps import SAMPLE_ONLY
from workbench.curate import overview
from workbench.runtime import commands


def build(ctx: AppContext) -> dict:
    """Lay out the tab and wire it to `ui.sample_steps`.

    Long on purpose (as every tab's `build`): Gradio wires events to the components made in the same
    Blocks context, so the callbacks are closures over them; the work itself is in plain functions.
    """
    gr.Markdown("Sample N replies per prompt from a policy, score them with a reward model and mark each "
                "prompt's best (Best-of-N). It runs as a separate `workbench bon` process, so the rest of the app "
                "stays usable; a cancelled run resumes where it stopped when started again with the same settings.")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Prompts**")
            with gr.Row():
                source = gr.Dropdown(label="Source", choices=[ANY], value=ANY)
                tag = gr.Dropdown(label="Tag", choices=[ANY], value=ANY)
            search = gr.Textbox(label="Prompt text contains", placeholder="optional")
            limit = gr.Textbox(label="At most this many prompts", value="10",
                               info="Empty for every matching prompt.")
            selected = gr.Markdown()
        with gr.Column():
            gr.Markdown("**Policy and reward model**")
            policy = gr.Dropdown(label="Policy", choices=["smollm2"], value="smollm2", allow_custom_value=True,
                                 info="smollm2, a policy the store has used, or a model under the app's "
                                      "--models-dir.")
            rm = gr.Dropdown(label="Reward model (picks the best)", choices=[SAMPLE_ONLY], value=None,
                             info="Reward models with weights in the store.")
            n = gr.Slider(1, commands.MAX_N, value=4, step=1, label="N (replies per prompt)")
        with gr.Column():
            gr.Markdown("**Sampling**")
            temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature", info="0 is greedy.")
            top_p = gr.Slider(0.05, 1, value=0.95, step=0.01, label="Top-p")
            max_new_tokens = gr.Slider(8, commands.MAX_NEW_TOKENS, value=128, step=8, label="Max new tokens")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0)
                batch_size = gr.Number(label="Batch size", value=32, precision=0, minimum=1,
                                       maximum=commands.MAX_BATCH_SIZE)
    with gr.Row():
        run = gr.Button("Run Best-of-N", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(elem_id="sample-progress")
    result = gr.Markdown(elem_id="sample-result")
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, show_label=False, autoscroll=True)
    job_id = gr.State(None)    # a sample_steps.SampleJob
    timer = gr.Timer(1.0, active=False)

    @user_errors
    def load_choices(current_source, current_tag, current_rm, current_policy):
        models = [(SAMPLE_ONLY, SAMPLE_ONLY), *overview.reward_model_choices(ctx.store, with_weights=True)]
        rm_value = steps.default_reward_model(current_rm, [v for _, v in models])
        return (*source_and_tag_dropdowns(ctx.store, current_source, current_tag),
                gr.Dropdown(choices=models, value=rm_value), model_dropdown(ctx.models, ctx.store, current_policy))

    @user_errors
    def count_selected(*values):
        return steps.selected_text(ctx, steps.selection(*values))

    @user_errors
    def start(current, source_v, tag_v, search_v, limit_v, *run_settings):
        job = steps.start_sampling(ctx, current, steps.selection(source_v, tag_v, search_v, limit_v), *run_settings)
        return job, render.job_progress(ctx.jobs.get(job.id).status()), "", "", gr.Timer(active=True)

    @user_errors
    def poll(current):
        if not current:
            return gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
        status, text = steps.run_view(ctx, current)
        if not status.done:
            return render.job_progress(status), gr.skip(), status.log, gr.skip()
        return render.job_progress(status), text or "", status.log, gr.Timer(active=False)

    @user_errors
    def stop(current):
        if current:
            ctx.jobs.get(current.id).cancel()
            gr.Info("Cancelling: the run stops after the current batch and can be resumed later.")

    selection_inputs = [source, tag, search, limit]
    # Text boxes: `change` (a browser's autofill or paste may not send `input`); dropdowns: `input`.
    gr.on([source.input, tag.input, search.submit, limit.change], count_selected, selection_inputs, selected,
          trigger_mode="always_last", api_visibility="private")
    run.click(start, [job_id, *selection_inputs, policy, rm, n, temperature, top_p, max_new_tokens, seed, batch_size],
              [job_id, progress, result, log, timer], api_name="sample_start")
    timer.tick(poll, job_id, [progress, result, log, timer], api_visibility="private")
    cancel.click(stop, job_id, None, api_name="sample_cancel")

    @user_errors
    def follow_adopted(current):
        adopted = steps.adopted_run(ctx, current)
        return (adopted, gr.Timer(active=True)) if adopted else (gr.skip(), gr.skip())

    def refresh_on(listener) -> None:
        listener(load_choices, [source, tag, rm, policy], [source, tag, rm, policy], api_visibility="private").then(
            count_selected, selection_inputs, selected, api_visibility="private").then(
            follow_adopted, job_id, [job_id, timer], api_visibility="private")

    return {"refresh_on": refresh_on}
