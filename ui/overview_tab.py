"""Overview tab: counts, score histogram, score against length (length bias), pair margins,
prompts whose replies all tie. Everything comes from `workbench.curate.overview`."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ui import render
from ui.context import AppContext
from ui.errors import user_errors
from workbench.curate import overview
from workbench.serving.status import server_lines

NO_SCORES = ("No scores yet: import scored Best-of-N data (`workbench import --format bon`), run "
             "`workbench score --rm MODEL`, or use the Sample tab.")


def _bias_text(bias: dict) -> str:
    r = bias["pearson_r"]
    if r is None:
        return "Not enough scores to measure length bias (the scores or lengths do not vary)."
    verdict = ("**strong** length bias: the model may be rewarding length" if abs(r) >= 0.5 else
               "some length bias, worth a look" if abs(r) >= 0.3 else "little length bias")
    shown = min(len(bias["points"]), bias["n"])
    return (f"Pearson r (score vs. characters) = **{r:.3f}** over {bias['n']:,} scored replies: {verdict}. "
            f"The plot shows {shown:,} of them.")


def _bars(frame: pd.DataFrame) -> gr.BarPlot:
    """Bars as wide as their bin (the frame holds bin centres, equally spaced)."""
    if frame.empty:
        return gr.BarPlot(value=None)
    x = frame.columns[0]
    width = float(frame[x].iloc[1] - frame[x].iloc[0]) if len(frame) > 1 else None
    return gr.BarPlot(value=frame, x_bin=width, y_aggregate="sum" if width else None)


def build(ctx: AppContext) -> dict:
    """Lay out the tab; returns {"refresh_on": f}, f(listener) wiring a reload to an event."""
    gr.Markdown("What the store holds. Pick a reward model to see its score distribution, whether it "
                "favours long replies, the margins of the pairs it labelled, and prompts it cannot separate.")
    cards = gr.HTML()
    servers = gr.Markdown()
    with gr.Row():
        rm = gr.Dropdown(label="Reward model", choices=[], scale=3,
                         info="Only reward models with scores in the store are listed.")
        refresh = gr.Button("Refresh", scale=1, size="sm")
    notice = gr.HTML()
    with gr.Row():
        # slanted tick labels: bin centres with decimals collide when laid flat on a narrow plot
        hist = gr.BarPlot(x="score", y="count", title="Score histogram", x_title="score (bin centre)",
                          y_title="replies", height=280, x_label_angle=-45)
        scatter = gr.ScatterPlot(x="chars", y="score", title="Score vs. reply length", x_title="characters",
                                 y_title="score", height=280)
    bias = gr.Markdown()
    with gr.Row():
        margins = gr.BarPlot(x="margin", y="count", title="Pair margins (chosen − rejected score)",
                             x_title="margin (bin centre)", y_title="pairs", height=280, x_label_angle=-45)
        with gr.Column():
            ties_text = gr.Markdown()
            ties = gr.Dataframe(pd.DataFrame(columns=overview.TIE_COLUMNS), label="Prompts whose replies all tie",
                                interactive=False, max_height=260,
                                wrap=True, column_widths=["34%", "16%", "14%", "12%", "24%"], elem_id="overview-ties")

    @user_errors
    def load_counts(selected):
        counts = overview.overview_counts(ctx.store)
        choices = overview.reward_model_choices(ctx.store, scored_only=True)
        ids = [value for _, value in choices]
        selected = selected if selected in ids else (ids[0] if ids else None)
        labels = {"prompts": counts["prompts"], "responses": counts["responses"], "scores": counts["scores"],
                  "pairs": counts["pairs"], "reward models": counts["reward_models"]}
        return render.count_cards(labels), server_lines(ctx.store.path), gr.Dropdown(choices=choices, value=selected)

    @user_errors
    def load_model(rm):
        if not rm:
            return render.empty(NO_SCORES), None, None, "", None, "", pd.DataFrame(columns=overview.TIE_COLUMNS)
        report = overview.model_report(ctx.store, rm)
        length, tied, margin_frame = report["length"], report["ties"], report["margins"]
        ties_md = (f"**{tied['total']:,} prompt{'s' if tied['total'] != 1 else ''}** with replies that all got the "
                   "same score: they give no pair. "
                   f"Sample more diverse replies or use another reward model for them." if tied["total"]
                   else "No prompt has all its scored replies tied.")
        notice_html = "" if len(margin_frame) else render.empty(
            "This reward model has labelled no pairs yet: build some with `workbench pairs build --rm ...`.")
        return (notice_html, _bars(report["scores"]), render.plot_value(length["points"]),
                _bias_text(length), _bars(margin_frame), ties_md,
                render.fixed_decimals(tied["prompts"], ["score"]))

    model_outputs = [notice, hist, scatter, bias, margins, ties_text, ties]

    def refresh_on(listener) -> None:
        listener(load_counts, rm, [cards, servers, rm], api_visibility="private").then(
            load_model, rm, model_outputs, api_visibility="private")

    refresh_on(refresh.click)
    rm.input(load_model, rm, model_outputs, api_name="overview")
    return {"refresh_on": refresh_on}
