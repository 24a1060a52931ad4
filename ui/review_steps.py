"""What the Review tab does, as plain functions of the app context and the components' values: fill a
queue from a source, show an annotator the next item (prompt and both replies, in that annotator's
left/right order; scores only when asked), store a label, and the agreement view. The annotator is the
login user (`workbench ui --users FILE` or `--auth`), or "local" on a loopback app without login.
`ui.review_tab` only wires components to these; tests drive them without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import pandas as pd

from ui.context import AppContext
from ui.inputs import number
from ui.render import reply_html
from workbench.errors import WorkbenchError
from workbench.review import queue as review_queue
from workbench.review.agreement import agreement_report
from workbench.store import queries

LOCAL_ANNOTATOR = "local"  # the annotator of an app that asks for no login
NOTHING_LEFT = "Nothing left for you in this queue."
LABELER_COLUMNS = ["labeler", "kind", "source", "pairs", "accuracy", "95% CI"]
DISPUTED_COLUMNS = ["queue", "source", "prompt", "prompt id", "votes (first/second: replies in id order)"]


@dataclass
class Shown:
    """The item on screen for one browser tab: what a key press labels."""

    item_id: str
    left_id: str
    right_id: str


def annotator_of(username: str | None) -> str:
    return username or LOCAL_ANNOTATOR


def queue_names(ctx: AppContext) -> list[str]:
    with ctx.store.connect() as con:
        names = [row["queue"] for row in queries.review_queues(con)]
    return names or [review_queue.DEFAULT_QUEUE]


def fill(ctx: AppContext, queue: str, source: str, size, overlap, seed, labelers=None) -> str:
    """Add pairs from the source to the queue (only pairs of `labelers`, NAME@VERSION, when given); a one-line report."""
    size = number(size, "Pairs to add", integer=True)
    overlap = number(overlap, "Annotators per item", integer=True) or 1
    if size is None:
        raise WorkbenchError("Say how many pairs to add.")
    result = review_queue.fill_queue(ctx.store, queue, source, size=size, overlap=overlap,
                                     seed=number(seed, "Seed", integer=True) or 0, labelers=list(labelers or []) or None)
    text = f"Added {result.added} pairs from {source} to queue '{result.queue}' (overlap {result.overlap})."
    return text + (f" {result.note}" if result.note else "")


def _scores_html(item: review_queue.ReviewItem) -> str:
    if not item.scores:
        return "<p class='wb-muted'>No labeler scored both replies.</p>"
    rows = "".join(f"<tr><td>{escape(name)}</td><td>{_num(left)}</td><td>{_num(right)}</td></tr>"
                   for name, left, right in item.scores)
    return f"<table class='wb-review-scores'><tr><th>labeler</th><th>left</th><th>right</th></tr>{rows}</table>"


def _num(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def show_next(ctx: AppContext, queue: str, annotator: str, show_scores: bool):
    """(Shown or None, status, prompt HTML, left HTML, right HTML, scores HTML) of the annotator's next item."""
    item, done = review_queue.next_item_and_progress(ctx.store, queue, annotator, with_scores=show_scores)
    if item is None:
        status = f"**{escape(annotator)}** · queue '{escape(queue)}' · {done} labelled · {NOTHING_LEFT}"
        return None, status, "", "", "", ""
    status = (f"**{escape(annotator)}** · queue '{escape(queue)}' · {done} labelled · {item.remaining} left · "
              f"item `{item.item_id[:8]}` ({item.source})")
    prompt = f"<div class='wb-review-prompt'>{reply_html(item.prompt)}</div>"
    left = f"<b>Left (1)</b><div class='wb-resp' id='review-left-text'>{reply_html(item.left_text)}</div>"
    right = f"<b>Right (2)</b><div class='wb-resp' id='review-right-text'>{reply_html(item.right_text)}</div>"
    scores = _scores_html(item) if show_scores else ""
    return Shown(item.item_id, item.left_id, item.right_id), status, prompt, left, right, scores


def label(ctx: AppContext, shown: Shown | None, annotator: str, key: str, note: str) -> str:
    """Store the annotator's verdict on the item on screen; a one-line report."""
    if shown is None:
        raise WorkbenchError("No item on screen: choose a queue and press Start.")
    review_queue.record_label(ctx.store, shown.item_id, annotator, key, shown.left_id, shown.right_id, note)
    return f"Saved: {key} on item {shown.item_id[:8]}."


def agreement_view(ctx: AppContext, queue: str | None):
    """(summary Markdown, labelers table, disputed table) for the queue ('' or None: every queue)."""
    report = agreement_report(ctx.store, queue or None)
    between = report["between_annotators"]
    lines = [f"{between['votes']} votes by {len(between['annotators'])} annotators "
             f"({', '.join(between['annotators']) or 'none yet'}) on {between['items']} items."]
    if between["method"] == "cohen_kappa":
        lines.append(f"Cohen's kappa: **{_value(between['value'])}**")
    elif between["method"] == "krippendorff_alpha":
        lines.append(f"Krippendorff's alpha: **{_value(between['value'])}**")
        lines += [f"Cohen's kappa {p['annotators'][0]} / {p['annotators'][1]}: {_value(p['cohen_kappa'])} "
                  f"on {p['items']} items" for p in between["pairwise"]]
    for row in report["judge_position_consistency"] or []:
        lines.append(f"{row['judge']}: position consistency {row['consistency']:.1%} of {row['pairs']} pairs")
    lines.append(f"*{report['note']}*")
    labelers = pd.DataFrame([[r["labeler"], r["kind"], r["source"], r["pairs"], f"{r['accuracy']:.1%}",
                              f"{r['ci95'][0]:.1%} – {r['ci95'][1]:.1%}"] for r in report["labelers"]],
                            columns=LABELER_COLUMNS)
    disputed = pd.DataFrame([[d["queue"], d["source"], d["prompt"][:200], d["prompt_id"],
                              ", ".join(f"{who}: {vote}" for who, vote in d["votes"].items())]
                             for d in report["disputed"]], columns=DISPUTED_COLUMNS)
    return "\n\n".join(lines), labelers, disputed


def _value(value) -> str:
    return "undefined (one category throughout)" if value is None else f"{value:.4f}"
