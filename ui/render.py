"""HTML for the parts of the app that are not plain components: count cards, a prompt's
responses side by side, job progress. Every piece of stored text is escaped here (a response
can contain anything, `<script>` included).
"""

from __future__ import annotations

import re
from html import escape

import pandas as pd
from markdown_it import MarkdownIt

from workbench.runtime.jobs import JobStatus

# Replies are Markdown more often than not (code fences, lists). CommonMark with raw HTML off, so a
# reply's "<script>" is shown as text; links and images off too: a stored reply must not make the
# browser fetch anything or offer a link that looks like the app's own.
_REPLY_MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable(["image", "link", "autolink"])


def reply_html(text: str) -> str:
    """A reply as safe HTML: its Markdown rendered (code in a monospace block), every tag escaped."""
    return _REPLY_MARKDOWN.render(text)

CSS = """
.wb-cards {display: flex; gap: 12px; flex-wrap: wrap; margin: 4px 0 8px;}
.wb-card {flex: 1 1 120px; border: 1px solid var(--border-color-primary); border-radius: 8px;
          padding: 10px 14px; background: var(--block-background-fill);}
.wb-card .n {font-size: 1.6em; font-weight: 600;}
.wb-card .k {color: var(--body-text-color-subdued); font-size: 0.9em;}
.wb-prompt {border-left: 4px solid var(--color-accent); padding: 6px 12px; margin-bottom: 10px;
            white-space: pre-wrap;}
.wb-prompt .role {font-weight: 600; text-transform: capitalize;}
.wb-grid {display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px;}
.wb-resp {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px;
          display: flex; flex-direction: column; gap: 6px;}
.wb-resp.pick {border: 2px solid #16a34a;}
.wb-resp .head {display: flex; justify-content: space-between; font-weight: 600;}
.wb-resp .text {max-height: 320px; overflow-y: auto; font-size: 0.92em; overflow-wrap: anywhere;
                background: var(--background-fill-secondary); padding: 6px 8px; border-radius: 6px;}
.wb-resp .text p {margin: 0 0 0.5em;}
.wb-resp .text pre {white-space: pre; overflow-x: auto; margin: 0.3em 0; padding: 6px;
                    background: var(--background-fill-primary); border-radius: 4px;}
.wb-resp .text code {font-family: var(--font-mono), ui-monospace, monospace; font-size: 0.92em;}
.wb-resp .text ul, .wb-resp .text ol {margin: 0.2em 0 0.5em 1.2em;}
.wb-scores {display: grid; grid-template-columns: 1fr auto; column-gap: 12px; font-size: 0.85em;}
.wb-scores b {text-align: right; font-variant-numeric: tabular-nums;}
.wb-badge {display: inline-block; border-radius: 10px; padding: 1px 8px; margin: 1px 2px; font-size: 0.8em;
           background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);}
.wb-badge.warn {background: #fef3c7; color: #92400e; border-color: #f59e0b;}
.wb-badge.good {background: #dcfce7; color: #166534; border-color: #22c55e;}
.wb-badge.info {background: #e0e7ff; color: #3730a3; border-color: #818cf8;}
.wb-progress {width: 100%; height: 14px;}
#curate-preview td:nth-child(n+4), #curate-preview th:nth-child(n+4),
#curate-preview td:nth-child(n+4) *, #curate-preview th:nth-child(n+4) *,
#overview-ties th, #overview-ties th * {word-break: keep-all !important; overflow-wrap: normal !important;}
.wb-empty {color: var(--body-text-color-subdued); padding: 12px; border: 1px dashed var(--border-color-primary);
           border-radius: 8px;}
"""


def count_cards(counts: dict[str, int]) -> str:
    """The store's counts as a row of HTML cards."""
    cards = "".join(f'<div class="wb-card"><div class="n">{value:,}</div><div class="k">{escape(key)}</div></div>'
                    for key, value in counts.items())
    return f'<div class="wb-cards">{cards}</div>'


def empty(message: str) -> str:
    """A grey box with a hint; `command` spans in the message are shown as code."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(message))
    return f'<div class="wb-empty">{text}</div>'


def _badge(text: str, kind: str = "") -> str:
    return f'<span class="wb-badge {kind}">{escape(text)}</span>'


SCORE_DECIMALS = 3


def _score(value: float) -> str:
    return decimals(value)


def decimals(value, digits: int = SCORE_DECIMALS) -> str:
    """A score, margin or accuracy with a fixed number of decimals ('' for none), so columns line up."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.{digits}f}"


def fixed_decimals(frame: pd.DataFrame, columns: list[str], digits: int = SCORE_DECIMALS) -> pd.DataFrame:
    """A copy of `frame` with `columns` shown as text with `digits` decimals."""
    shown = frame.copy()
    for column in columns:
        if column in shown:
            shown[column] = [decimals(v, digits) for v in shown[column]]
    return shown


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """The held-out comparison with 3 decimals everywhere but the pair count."""
    shown = table.astype(object)
    for column in shown.columns[1:]:
        shown[column] = [("" if v is None or v != v else f"{int(v):,}") if metric == "n" else decimals(v)
                         for metric, v in zip(shown["metric"], table[column])]
    return shown


def prompt_detail(detail: dict) -> str:
    """The prompt's turns, then one card per response, side by side."""
    prompt = detail["prompt"]
    turns = "".join(f'<div><span class="role">{escape(m["role"])}:</span> {escape(m["content"])}</div>'
                    for m in prompt["messages"])
    tags = "".join(_badge(t) for t in prompt["tags"])
    header = (f'<div class="wb-prompt">{turns}</div>'
              f'<div>source {_badge(prompt["source"])} {tags} <small>id {escape(prompt["prompt_id"])}</small></div>')
    responses = detail["responses"]
    if not responses:
        return header + empty("No responses yet: sample some in the Sample tab or with `workbench sample`.")
    cards = "".join(_response_card(i, r) for i, r in enumerate(responses))
    return f'{header}<p>{len(responses)} responses</p><div class="wb-grid">{cards}</div>'


def _response_card(index: int, r: dict) -> str:
    badges = []
    for rm in r["bon_pick_by"]:
        badges.append(_badge(f"★ BoN pick ({rm})", "good"))
    if r["chosen"]:
        badges.append(_badge(f"chosen ×{r['chosen']}", "info"))
    if r["rejected"]:
        badges.append(_badge(f"rejected ×{r['rejected']}"))
    badges += [_badge(flag, "warn") for flag in r["flags"]]
    scores = "".join(f"<span>{escape(rm)}</span><b>{_score(v)}</b>" for rm, v in sorted(r["scores"].items()))
    scores = f'<div class="wb-scores">{scores}</div>' if scores else "<small>no scores</small>"
    finish = r["finish_reason"] or "unknown"
    origin = r["origin"] if r["sample_index"] is None else f"{r['origin']} · sample {r['sample_index']}"
    tokens = f" · {r['n_tokens']} tokens" if r["n_tokens"] is not None else ""
    pick = " pick" if r["bon_pick_by"] else ""
    return (f'<div class="wb-resp{pick}"><div class="head"><span>#{index}</span>'
            f'<small>{escape(origin)}</small></div>'
            f'<div>{"".join(badges)}</div>'
            f'<div class="text">{reply_html(r["text"])}</div>{scores}'
            f'<small>finish: {escape(finish)} · {r["n_chars"]:,} chars{tokens}</small></div>')


def job_progress(status: JobStatus | None) -> str:
    """A progress bar and one status line for a job."""
    if status is None:
        return ""
    state = {"running": "Running", "completed": "Finished", "failed": "Failed", "cancelled": "Cancelled"}[status.state]
    step = f" (step {status.step} of {status.steps})" if status.steps > 1 else ""
    bar = ""
    if status.progress is not None:
        done, total, _ = status.progress
        bar = f'<progress class="wb-progress" value="{done}" max="{max(total, 1)}"></progress>'
    elif status.state == "running":
        bar = '<progress class="wb-progress"></progress>'  # indeterminate until the first bar shows
    detail = escape(status.progress_text())
    error = f"<br><b>{escape(status.error)}</b>" if status.error else ""
    return (f'<div>{bar}<div><b>{state}</b>{step} · {status.elapsed_s:.0f} s'
            f'{" · " + detail if detail else ""}{error}</div></div>')


def plot_value(frame: pd.DataFrame) -> pd.DataFrame | None:
    """None for no data: a Gradio 6.31 plot that once received an empty frame draws no lines or
    colours for later data (checked in a browser), while None resets it cleanly."""
    return None if frame is None or frame.empty else frame
