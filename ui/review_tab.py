"""Review: fill a queue from a named source, label its pairs (keyboard: 1 left better, 2 right better,
t tie, b both bad, s skip; `KEYBOARD_JS` clicks the buttons), and see how far people, reward models
and judges agree. Everything comes from `ui.review_steps`."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ui import review_steps as steps
from ui.context import AppContext
from ui.errors import user_errors
from workbench.curate import overview
from workbench.review.queue import DEFAULT_QUEUE, SOURCES, UNBIASED_NOTE, UNBIASED_SOURCE

ALL_QUEUES = "(all queues)"
# key -> (verdict, button label). The keys are read by KEYBOARD_JS through the buttons' element ids.
KEYS = {"left": ("1", "Left better (1)"), "right": ("2", "Right better (2)"), "tie": ("t", "Tie (t)"),
        "both-bad": ("b", "Both bad (b)"), "skip": ("s", "Skip (s)")}

# Loaded in the page's <head> (`launch(head=...)`): a key press clicks the matching button while the
# Review tab is on screen, unless the focus is in a text box (the note takes letters).
KEYBOARD_JS = """<script>
document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA' || target.isContentEditable)) return;
  const ids = {%s};
  const button = document.getElementById(ids[event.key] || '');
  if (!button || button.offsetParent === null || button.disabled) return;
  event.preventDefault();
  button.click();
});
</script>""" % ", ".join(f"'{key}': 'review-key-{verdict}'" for verdict, (key, _) in KEYS.items())

CSS = """
#review-left-text, #review-right-text {min-height: 6em;}
.wb-review-prompt {border-left: 3px solid var(--color-accent); padding-left: 10px; margin-bottom: 6px;}
.wb-review-scores td, .wb-review-scores th {padding: 2px 10px;}
"""


def _username(request: gr.Request | None) -> str:
    return steps.annotator_of(getattr(request, "username", None) if request is not None else None)


def build(ctx: AppContext) -> dict:
    """Lay out the tab; returns {"refresh_on": f}. Long: two sections (fill a queue, label), each a few
    components and their callbacks; the agreement view is `_agreement_section`."""
    gr.Markdown("Label pairs by hand. Replies appear in a random left/right order (stored with each label); "
                "scores stay hidden unless you ask, so they do not anchor you. Keys: **1** left better, "
                "**2** right better, **t** tie, **b** both bad, **s** skip.")
    with gr.Accordion("Fill a queue", open=False):
        with gr.Row():
            fill_queue = gr.Textbox(label="Queue", value=DEFAULT_QUEUE, scale=2)
            source = gr.Dropdown(label="Source", choices=list(SOURCES), value=UNBIASED_SOURCE, scale=2)
            size = gr.Number(label="Pairs to add", value=20, precision=0, minimum=1, scale=1)
            overlap = gr.Number(label="Annotators per item", value=1, precision=0, minimum=1, scale=1)
            seed = gr.Number(label="Seed", value=0, precision=0, scale=1)
            add = gr.Button("Add to queue", scale=1)
        labelers_in = gr.Dropdown(label="Only pairs of these labelers (optional)", choices=[], multiselect=True)
        gr.Markdown(f"*{UNBIASED_NOTE}*")
        fill_result = gr.Markdown(elem_id="review-fill-result")
    with gr.Row():
        queue = gr.Dropdown(label="Queue to label", choices=[DEFAULT_QUEUE], value=DEFAULT_QUEUE,
                            allow_custom_value=True, scale=3)
        start = gr.Button("Start / reload", variant="primary", scale=1, elem_id="review-start")
        show_scores = gr.Checkbox(label="Show scores", value=False, scale=1)
    shown = gr.State(None)
    status = gr.Markdown(elem_id="review-status")
    prompt = gr.HTML(elem_id="review-prompt")
    with gr.Row(equal_height=True):
        left = gr.HTML(elem_id="review-left")
        right = gr.HTML(elem_id="review-right")
    scores = gr.HTML(elem_id="review-scores")
    note = gr.Textbox(label="Note (optional; saved with the next verdict)", lines=1, elem_id="review-note")
    with gr.Row():
        buttons = {verdict: gr.Button(text, elem_id=f"review-key-{verdict}", size="sm")
                   for verdict, (_, text) in KEYS.items()}
    saved = gr.Markdown(elem_id="review-saved")
    agreement_queue = _agreement_section(ctx)

    @user_errors
    def add_pairs(name, src, n, k, s, chosen):
        text = steps.fill(ctx, name, src, n, k, s, chosen)
        names = steps.queue_names(ctx)
        return text, gr.Dropdown(choices=names), gr.Dropdown(choices=[ALL_QUEUES, *names])

    @user_errors
    def load(name, with_scores, request: gr.Request):
        return steps.show_next(ctx, name, _username(request), with_scores)

    def labeller(verdict):
        @user_errors
        def press(current, name, with_scores, text, request: gr.Request):
            annotator = _username(request)
            message = steps.label(ctx, current, annotator, verdict, text)
            return (*steps.show_next(ctx, name, annotator, with_scores), message, "")
        return press

    @user_errors
    def refresh(current_queue, current_agreement, with_scores, chosen, request: gr.Request):
        """On opening the tab: the store's queues and labelers, and the annotator's next item of the chosen queue."""
        names = steps.queue_names(ctx)
        value = current_queue if current_queue in names else names[0]
        labeler_choices = overview.reward_model_choices(ctx.store)
        known = {v for _, v in labeler_choices}
        return (gr.Dropdown(choices=names, value=value),
                gr.Dropdown(choices=labeler_choices, value=[c for c in chosen or [] if c in known]),
                gr.Dropdown(choices=[ALL_QUEUES, *names],
                            value=current_agreement if current_agreement in names else ALL_QUEUES),
                *steps.show_next(ctx, value, _username(request), with_scores))

    item_views = [shown, status, prompt, left, right, scores]
    add.click(add_pairs, [fill_queue, source, size, overlap, seed, labelers_in], [fill_result, queue, agreement_queue],
              api_name="review_fill_queue")
    start.click(load, [queue, show_scores], item_views, api_name="review_next")
    show_scores.change(load, [queue, show_scores], item_views, api_visibility="private")
    queue.input(load, [queue, show_scores], item_views, api_visibility="private")
    for verdict, button in buttons.items():
        button.click(labeller(verdict), [shown, queue, show_scores, note], [*item_views, saved, note],
                     api_name=f"review_label_{verdict.replace('-', '_')}")

    def refresh_on(listener) -> None:
        listener(refresh, [queue, agreement_queue, show_scores, labelers_in],
                 [queue, labelers_in, agreement_queue, *item_views],
                 api_visibility="private")

    return {"refresh_on": refresh_on}


def _agreement_section(ctx: AppContext) -> gr.Dropdown:
    """The agreement view: a queue (or all) and its report; returns the queue dropdown (refreshed with the tab)."""
    gr.Markdown("### Agreement")
    with gr.Row():
        agreement_queue = gr.Dropdown(label="Queue", choices=[ALL_QUEUES], value=ALL_QUEUES, scale=3)
        compute = gr.Button("Compute agreement", scale=1, elem_id="review-agreement-button")
    summary = gr.Markdown(elem_id="review-agreement")
    labelers = gr.Dataframe(pd.DataFrame(columns=steps.LABELER_COLUMNS), label="Labelers vs the human majority",
                            interactive=False, elem_id="review-labelers")
    disputed = gr.Dataframe(pd.DataFrame(columns=steps.DISPUTED_COLUMNS), label="Disputed items",
                            interactive=False, wrap=True, elem_id="review-disputed")

    @user_errors
    def agreement(name):
        return steps.agreement_view(ctx, None if name == ALL_QUEUES else name)

    compute.click(agreement, [agreement_queue], [summary, labelers, disputed], api_name="review_agreement")
    return agreement_queue
