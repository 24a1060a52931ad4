"""Retrain tab: train a reward model on the curated pairs (`workbench rm train` as a child
process, with its log and loss curve), compare it with another model on its held-out pairs
(`workbench rm eval`), and score the store with it (`workbench score`)."""

from __future__ import annotations

import shlex

import gradio as gr
import pandas as pd

from ui import render
from ui.context import AppContext
from ui.curate_tab import to_filter
from ui.errors import user_errors
from ui.inputs import number
from workbench import commands, curation, overview
from workbench.errors import WorkbenchError
from workbench.reward_models import resolve_reward_model


def build(ctx: AppContext, filters: list) -> dict:
    gr.Markdown("Train a reward model on the pairs selected in **Curate & export**, watch its loss, then compare "
                "it with an older model on pairs held out from training, and score the store with it. Each step "
                "runs as a separate `workbench` process and can be cancelled.")
    data = gr.Markdown(elem_id="retrain-data")
    with gr.Row():
        name = gr.Textbox(label="New model name", value="rm-curated")
        base = gr.Dropdown(label="Base model", choices=["smollm2"], value="smollm2", allow_custom_value=True,
                           info="smollm2, a model the store knows, or one under the app's --models-dir.")
        lora = gr.Checkbox(label="LoRA (faster, smaller)", value=True)
    with gr.Row():
        epochs = gr.Number(label="Epochs", value=1.0)
        lr = gr.Textbox(label="Learning rate", placeholder="default: 2e-4 LoRA, 2e-5 full",
                        info=f"At most {commands.MAX_LR:g}.")
        max_length = gr.Number(label="Max tokens per conversation", value=512, precision=0,
                               maximum=commands.MAX_TRAIN_LENGTH)
        pairs_per_step = gr.Number(label="Pairs per step", value=8, precision=0, maximum=commands.MAX_PAIRS_PER_STEP)
        max_steps = gr.Textbox(label="Max steps", placeholder="no limit")
        eval_fraction = gr.Number(label="Held-out fraction", value=0.1)
        seed = gr.Number(label="Seed", value=0, precision=0)
    command = gr.Code(label="Command", language="shell", interactive=False, lines=2, wrap_lines=True)
    with gr.Row():
        train = gr.Button("Train reward model", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(elem_id="retrain-progress")
    curve = gr.LinePlot(x="step", y="value", color="metric", title="Training loss and accuracy", height=260,
                        elem_id="retrain-curve")
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, show_label=False, autoscroll=True)
    gr.Markdown("**Compare and use**")
    with gr.Row():
        new_model = gr.Dropdown(label="New model", choices=[], info="Its held-out pairs are the test set.")
        old_model = gr.Dropdown(label="Compare with", choices=[])
        evaluate = gr.Button("Evaluate both", scale=0)
        rescore = gr.Button("Score the store with the new model", scale=0)
    comparison = gr.Dataframe(pd.DataFrame(columns=["metric", "compared with", "new model", "change"]),
                              label="Held-out comparison (accuracy: share of pairs ranked right; "
                                    "length_baseline: the longer reply always wins)", interactive=False,
                              elem_id="retrain-comparison")
    outcome = gr.Markdown()
    job = gr.State(None)        # {"id": ..., "kind": ..., "dir": ..., "names": [...]}
    timer = gr.Timer(1.0, active=False)
    settings = [name, base, lora, epochs, lr, max_length, pairs_per_step, max_steps, eval_fraction, seed]

    def request(name_v, base_v, lora_v, epochs_v, lr_v, length_v, pps_v, steps_v, frac_v, seed_v):
        return commands.TrainRequest(name=(name_v or "").strip(), base=base_v or "", lora=bool(lora_v),
                                     epochs=epochs_v or 0, lr=number(lr_v, "Learning rate"),
                                     max_length=int(length_v or 0), pairs_per_step=int(pps_v or 0),
                                     max_steps=number(steps_v, "Max steps", integer=True),
                                     eval_fraction=frac_v or 0, seed=int(seed_v or 0))

    def plan(values):
        settings_v, filter_v = values[:len(settings)], values[len(settings):]
        req = request(*settings_v)
        out_dir = commands.training_dir(ctx.runs_dir, req.name)
        argv = commands.train_command(ctx.store, to_filter(*filter_v), req, out_dir, ctx.models)
        return req, out_dir, argv

    @user_errors
    def describe(*values):
        flt = to_filter(*values[len(settings):])
        total = curation.curation_preview(ctx.store, ctx.index, flt, page_size=1).total
        text = f"Training data: **{total:,} pairs** selected in Curate & export ({flt.describe()})."
        try:
            _, _, argv = plan(values)
            shown = " ".join(shlex.quote(a) for a in ["workbench", *argv[3:]])
        except WorkbenchError as error:
            shown = f"# {error}"
        return text, shown

    @user_errors
    def load_models(current_new, current_old):
        choices = overview.reward_model_choices(ctx.store, with_weights=True)
        ids = [v for _, v in choices]
        new = current_new if current_new in ids else (ids[-1] if ids else None)
        old = current_old if current_old in ids else next((i for i in ids if i != new), new)
        hint = "Its held-out pairs are the test set." if ids else "No reward model with weights yet: train one above."
        return gr.Dropdown(choices=choices, value=new, info=hint), gr.Dropdown(choices=choices, value=old)

    @user_errors
    def load_bases(current):
        return gr.Dropdown(choices=ctx.models.choices(ctx.store), value=current)

    def check_idle(current):
        if current and ctx.jobs.get(current["id"]).state == "running":
            raise gr.Error("A job is running in this tab: wait for it or cancel it first.")

    def started(state):
        status = ctx.jobs.get(state["id"]).status()
        curve_v = None if state["kind"] == "train" else gr.skip()  # a new run starts a new curve
        return state, render.job_progress(status), "", curve_v, gr.Timer(active=True)

    @user_errors
    def start_training(current, *values):
        check_idle(current)
        req, out_dir, argv = plan(values)
        if (out_dir / "config.json").exists():
            raise gr.Error(f"{out_dir} already holds a model: pick another name.")
        started_job = ctx.jobs.start("train", [argv])
        return started(({"id": started_job.id, "kind": "train", "dir": str(out_dir), "names": [req.name]}))

    @user_errors
    def start_evaluation(current, new_id, old_id):
        check_idle(current)
        if not new_id or not old_id:
            raise gr.Error("Pick the new model and the one to compare it with.")
        ctx.models.check_reward_model(ctx.store, new_id)  # before resolving: a directory would be registered
        ctx.models.check_reward_model(ctx.store, old_id)
        new, old = resolve_reward_model(ctx.store, new_id), resolve_reward_model(ctx.store, old_id)
        data = commands.heldout_path(new["path"])
        names = [f"{old['name']}@{old['version']}", f"{new['name']}@{new['version']}"]
        started_job = ctx.jobs.start("eval", commands.eval_commands(ctx.store, [old_id, new_id], data))
        return started({"id": started_job.id, "kind": "eval", "dir": None, "names": names})

    @user_errors
    def start_rescore(current, new_id):
        check_idle(current)
        started_job = ctx.jobs.start("score", [commands.rescore_command(ctx.store, new_id, ctx.models)])
        return started({"id": started_job.id, "kind": "score", "dir": None, "names": []})

    @user_errors
    def poll(current):
        if not current:
            return (*[gr.skip()] * 7, gr.Timer(active=False))
        running = ctx.jobs.get(current["id"])
        status = running.status()
        curve_v = render.plot_value(commands.loss_curve(commands.read_metrics(current["dir"]))) \
            if current["kind"] == "train" else gr.skip()
        if not status.done:
            return render.job_progress(status), status.log, curve_v, *[gr.skip()] * 4, gr.skip()
        table, text, models = gr.skip(), "", (gr.skip(), gr.skip())
        if status.state == "completed" and current["kind"] == "eval":
            table = commands.compare_evaluations(current["names"], [running.output(0), running.output(1)])
            text = "Evaluated both models on the same held-out pairs."
        elif status.state == "completed" and current["kind"] == "score":
            result = commands.parse_json_output(running.output(0)) or {}
            text = f"Scored {result.get('scored', 0):,} responses with {result.get('rm', 'the model')}. " \
                   "The Overview and Browse tabs show the new scores."
        elif status.state == "completed":
            text = f"Trained and registered **{current['names'][0]}**. Evaluate it below, then score the store."
            trained = resolve_reward_model(ctx.store, current["names"][0])
            models = load_models(f"{trained['name']}@{trained['version']}", None)
        return render.job_progress(status), status.log, curve_v, table, text, *models, gr.Timer(active=False)

    @user_errors
    def stop(current):
        if current:
            ctx.jobs.get(current["id"]).cancel()
            gr.Info("Cancelling the running job.")

    start_outputs = [job, progress, outcome, curve, timer]
    train.click(start_training, [job, *settings, *filters], start_outputs, api_name="train_start")
    evaluate.click(start_evaluation, [job, new_model, old_model], start_outputs, api_name="evaluate")
    rescore.click(start_rescore, [job, new_model], start_outputs, api_name="rescore")
    timer.tick(poll, job, [progress, log, curve, comparison, outcome, new_model, old_model, timer],
               api_visibility="private")
    cancel.click(stop, job, None, api_name="train_cancel")
    gr.on([s.change for s in settings], describe, [*settings, *filters], [data, command], trigger_mode="always_last",
          api_visibility="private")

    def refresh_on(listener) -> None:
        listener(describe, [*settings, *filters], [data, command], api_visibility="private").then(
            load_models, [new_model, old_model], [new_model, old_model], api_visibility="private").then(
            load_bases, base, base, api_visibility="private")

    return {"refresh_on": refresh_on}
