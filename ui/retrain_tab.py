"""Retrain tab: train a reward model on the curated pairs (`workbench rm train` as a child
process, with its log and loss curve), compare it with another model on its held-out pairs
(`workbench rm eval`), and score the store with it (`workbench score`)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ui import render
from ui import retrain_steps as steps
from ui.choices import model_dropdown
from ui.context import AppContext
from ui.curve import training_curve_svg
from ui.errors import user_errors
from workbench.runtime import commands


def build(ctx: AppContext, filters: list) -> dict:
    """Lay out the tab and wire it to `ui.retrain_steps`; `filters` are the Curate tab's inputs.

    Long on purpose (as every tab's `build`): Gradio wires events to the components made in the same
    Blocks context, so the callbacks are closures over them; the steps themselves are plain functions
    in `ui.retrain_steps`, and the inputs and the comparison section are laid out by the helpers below."""
    gr.Markdown("Train a reward model on the pairs selected in **Curate & export**, watch its loss, then compare "
                "it with an older model on pairs held out from training, and score the store with it. Each step "
                "runs as a separate `workbench` process and can be cancelled.")
    data = gr.Markdown(elem_id="retrain-data")
    settings = _training_settings()
    base = settings[1]
    command = gr.Textbox(label="Command", interactive=False, lines=1, max_lines=4, buttons=["copy"],
                         elem_id="retrain-command")
    with gr.Row():
        train = gr.Button("Train reward model", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(elem_id="retrain-progress")
    curve = gr.HTML(training_curve_svg(None), label="Training loss and accuracy", elem_id="retrain-curve")
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, show_label=False, autoscroll=True)
    new_model, old_model, eval_set, evaluate, rescore, comparison = _compare_section()
    outcome = gr.Markdown()
    job = gr.State(None)        # a retrain_steps.RetrainJob
    timer = gr.Timer(1.0, active=False)

    @user_errors
    def describe(*values):
        return steps.describe_training(ctx, values)

    @user_errors
    def load_models(current_new, current_old):
        choices, new, old, hint = steps.model_selection(ctx, current_new, current_old)
        return gr.Dropdown(choices=choices, value=new, info=hint), gr.Dropdown(choices=choices, value=old)

    @user_errors
    def load_bases(current):
        return model_dropdown(ctx.models, ctx.store, current)

    def started(started_job: steps.RetrainJob):
        status = ctx.jobs.get(started_job.id).status()
        curve_v = training_curve_svg(None) if started_job.kind == "train" else gr.skip()  # a new run, a new curve
        return started_job, render.job_progress(status), "", curve_v, gr.Timer(active=True)

    @user_errors
    def start_training(current, *values):
        return started(steps.start_training(ctx, current, values))

    @user_errors
    def start_evaluation(current, new_id, old_id, chosen_set, *filter_values):
        return started(steps.start_evaluation(ctx, current, new_id, old_id, chosen_set, filter_values))

    @user_errors
    def start_rescore(current, new_id):
        return started(steps.start_rescore(ctx, current, new_id))

    @user_errors
    def poll(current):
        if not current:
            return (*[gr.skip()] * 7, gr.Timer(active=False))
        view = steps.job_view(ctx, current)
        curve_v = training_curve_svg(view.curve) if current.kind == "train" else gr.skip()
        if not view.status.done:
            return render.job_progress(view.status), view.status.log, curve_v, *[gr.skip()] * 4, gr.skip()
        table = render.comparison_table(view.table) if view.table is not None else gr.skip()
        models = load_models(view.trained, None) if view.trained else (gr.skip(), gr.skip())
        return render.job_progress(view.status), view.status.log, curve_v, table, view.text, *models, \
            gr.Timer(active=False)

    @user_errors
    def stop(current):
        if current:
            ctx.jobs.get(current.id).cancel()
            gr.Info("Cancelling the running job.")

    start_outputs = [job, progress, outcome, curve, timer]
    # The job's own progress bar shows what runs; Gradio's status overlay would only add a red "Error"
    # badge on the progress, curve and result of the last job when a new one is refused (the toast says why).
    train.click(start_training, [job, *settings, *filters], start_outputs, api_name="train_start",
                show_progress="hidden")
    evaluate.click(start_evaluation, [job, new_model, old_model, eval_set, *filters], start_outputs,
                   api_name="evaluate", show_progress="hidden")
    rescore.click(start_rescore, [job, new_model], start_outputs, api_name="rescore", show_progress="hidden")
    timer.tick(poll, job, [progress, log, curve, comparison, outcome, new_model, old_model, timer],
               api_visibility="private")
    cancel.click(stop, job, None, api_name="train_cancel")
    gr.on([s.change for s in settings], describe, [*settings, *filters], [data, command], trigger_mode="always_last",
          api_visibility="private")

    @user_errors
    def follow_adopted(current):
        adopted = steps.adopted_job(ctx, current)
        return (adopted, gr.Timer(active=True)) if adopted else (gr.skip(), gr.skip())

    def refresh_on(listener) -> None:
        listener(describe, [*settings, *filters], [data, command], api_visibility="private").then(
            follow_adopted, job, [job, timer], api_visibility="private").then(
            load_models, [new_model, old_model], [new_model, old_model], api_visibility="private").then(
            load_bases, base, base, api_visibility="private")

    return {"refresh_on": refresh_on}


def _training_settings() -> list:
    """The training inputs, in `retrain_steps.describe_training`'s order; they start at
    `rm train --from-store`'s app defaults."""
    defaults = commands.TrainRequest()
    with gr.Row():
        name = gr.Textbox(label="New model name", value=defaults.name)
        base = gr.Dropdown(label="Base model", choices=["smollm2"], value=defaults.base, allow_custom_value=True,
                           info="smollm2, a model the store knows, or one under the app's --models-dir.")
        recipe = gr.Dropdown(label="Recipe", choices=commands.TRAIN_RECIPES, value=defaults.recipe,
                             info="head-only: frozen backbone, cached features, seconds per retrain (best on CPU)")
    with gr.Row():
        epochs = gr.Number(label="Epochs", value=defaults.epochs)
        lr = gr.Textbox(label="Learning rate", placeholder="default: the recipe's",
                        info=f"At most {commands.MAX_LR:g}.")
        max_length = gr.Number(label="Max tokens per conversation", value=defaults.max_length,
                               precision=0, maximum=commands.MAX_TRAIN_LENGTH)
        pairs_per_step = gr.Number(label="Pairs per step", value=defaults.pairs_per_step, precision=0,
                                   maximum=commands.MAX_PAIRS_PER_STEP)
        max_steps = gr.Textbox(label="Max steps", placeholder="no limit")
        eval_fraction = gr.Number(label="Held-out fraction", value=defaults.eval_fraction)
        seed = gr.Number(label="Seed", value=defaults.seed, precision=0)
    return [name, base, recipe, epochs, lr, max_length, pairs_per_step, max_steps, eval_fraction, seed]


def _compare_section() -> tuple:
    """The models to compare, the evaluation set, the two buttons and the comparison table."""
    gr.Markdown("**Compare and use**")
    with gr.Row():
        new_model = gr.Dropdown(label="New model", choices=[], info="The newest model by default.")
        old_model = gr.Dropdown(label="Compare with", choices=[])
        eval_set = gr.Dropdown(label="Evaluate on", choices=[(v, k) for k, v in commands.EVAL_SETS.items()],
                               value="heldout", info="Pairs either model labelled are always left out.")
    with gr.Row():
        evaluate = gr.Button("Evaluate both")
        rescore = gr.Button("Score the store with the new model")
    comparison = gr.Dataframe(pd.DataFrame(columns=["metric", "compared with", "new model", "change"]),
                              label="Comparison (accuracy: share of pairs ranked right; "
                                    "length_baseline: the longer reply always wins)", interactive=False,
                              elem_id="retrain-comparison")
    return new_model, old_model, eval_set, evaluate, rescore, comparison
