"""Compare reward models: two models' agreement on the replies both scored, and the pairs they
disagree on most (to open in Browse by prompt id). Everything comes from `workbench.models.compare`."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ui.context import AppContext
from ui.errors import user_errors
from workbench.curate import overview
from workbench.models import compare

NEEDS_TWO = ("Comparing needs two reward models with scores on the same replies: score the store with a "
             "second model (`workbench score --rm MODEL`).")


def build(ctx: AppContext) -> dict:
    """Lay out the tab; returns {"refresh_on": f}."""
    gr.Markdown("How far two reward models agree on the replies both scored: rank correlations overall and "
                "within each prompt, the share of same-prompt pairs they order alike, their length bias, and "
                "the pairs they disagree on most firmly (a cheap reward-hacking signal). Open a pair's prompt id "
                "in Browse to read every reply.")
    with gr.Row():
        # custom values: NAME, NAME@VERSION or an id typed in works too (and the API takes any)
        model_a = gr.Dropdown(label="Reward model A", choices=[], allow_custom_value=True, scale=2)
        model_b = gr.Dropdown(label="Reward model B", choices=[], allow_custom_value=True, scale=2)
        top = gr.Number(label="Pairs listed", value=compare.TOP_PAIRS, precision=0, minimum=0, scale=1)
        run = gr.Button("Compare", variant="primary", scale=1)
    notice = gr.Markdown(elem_id="compare-notice")
    summary = gr.Dataframe(pd.DataFrame(columns=["measure", "value"]), label="Agreement", interactive=False,
                           elem_id="compare-summary")
    pairs = gr.Dataframe(pd.DataFrame(columns=compare.DISAGREEMENT_COLUMNS), label="Most-disagreeing pairs",
                         interactive=False, wrap=True, max_height=600, elem_id="compare-pairs",
                         column_widths=["16%", "26%", "26%", "8%", "8%", "7%", "9%"])

    @user_errors
    def load_choices(current_a, current_b):
        choices = overview.reward_model_choices(ctx.store, scored_only=True)
        values = [v for _, v in choices]
        a = current_a if current_a in values else (values[0] if values else None)
        b = current_b if current_b in values and current_b != a else next((v for v in values if v != a), None)
        return (gr.Dropdown(choices=choices, value=a), gr.Dropdown(choices=choices, value=b),
                "" if len(values) >= 2 else NEEDS_TWO)

    @user_errors
    def run_compare(a, b, n):
        if not a or not b:
            raise gr.Error(NEEDS_TWO, title="Cannot do that", print_exception=False)
        result = compare.compare_reward_models(ctx.store, a, b, top=int(n or 0))
        text = (f"A = **{result['a']}**, B = **{result['b']}**: {result['responses']:,} replies to "
                f"{result['prompts']:,} prompts scored by both.")
        return text, compare.summary_table(result), compare.disagreement_table(result)

    run.click(run_compare, [model_a, model_b, top], [notice, summary, pairs], api_name="compare_reward_models")

    def refresh_on(listener) -> None:
        listener(load_choices, [model_a, model_b], [model_a, model_b, notice], api_visibility="private")

    return {"refresh_on": refresh_on}
