"""Curate & export tab: filters, a live count of the pairs an export would write (by labeler and
strategy) with their first rows, the why-dropped waterfall (the numbers the export's manifest
records, drawn by `ui.waterfall`), and the export itself with a download and its manifest.
Everything comes from `workbench.curate.curation` and `workbench.curate.explain`."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from html import escape
from pathlib import Path

import gradio as gr
import pandas as pd

from ui import render, waterfall
from ui.choices import kept, source_and_tag_dropdowns
from ui.context import AppContext
from ui.errors import user_errors
from ui.inputs import ANY, number, or_none
from workbench.curate import curation, overview
from workbench.curate.explain import why_dropped
from workbench.errors import WorkbenchError
from workbench.curate.pair_filter import PairFilter, field_type
from workbench.curate.pairs import STRATEGIES

HUMAN = "human"
NO_PAIRS = ("The store has no pairs yet: import preference data (`workbench import`) or build pairs from "
            "scored replies (`workbench pairs build --rm MODEL`).")


# The filter inputs, in this order: one per `PairFilter` field, except `label` and `rm`, which
# share the "Labelled by" dropdown, and `limit` (the app exports every selected pair).
FILTER_INPUTS = ("source", "tag", "labeler", "strategy", "min_margin", "min_score", "max_score", "min_chars",
                 "max_chars", "exclude_flagged", "exclude_contaminated")
_FIELDS = {f.name: f for f in fields(PairFilter)}


def to_filter(*values) -> PairFilter:
    """The filter components' values (in `FILTER_INPUTS` order) as a `PairFilter`; an empty box or
    "(any)" means no bound, and a box that holds no number is refused naming its label."""
    given = dict(zip(FILTER_INPUTS, values, strict=True))
    labeler = or_none(given.pop("labeler"))
    chosen = {"label": HUMAN if labeler == HUMAN else None, "rm": labeler if labeler not in (None, HUMAN) else None}
    for name, value in given.items():
        kind = field_type(name)
        if kind is bool:
            chosen[name] = bool(value)
        elif kind is str:
            chosen[name] = or_none(value)
        else:
            chosen[name] = number(value, _FIELDS[name].metadata["label"], integer=kind is int)
    return PairFilter(**chosen)


# Filters that select pairs: an SFT export writes replies, so the tab disables them for it.
PAIR_ONLY_INPUTS = ("strategy", "min_margin")
PAIR_COLUMN_WIDTHS = ["16%", "18%", "18%", "8%", "9%", "12%", "9%", "10%"]
SFT_COLUMN_WIDTHS = ["28%", "44%", "9%", "6%", "13%"]


def preview_for(ctx: AppContext, schema: str, values) -> curation.CurationPreview | str:
    """What the export with this schema and these filter values writes (count and first rows), or,
    for an SFT export without a reward model under "Labelled by", what to pick."""
    flt = to_filter(*values)
    if schema != "sft":
        return curation.curation_preview(ctx.store, ctx.index, flt)
    if flt.rm is None:
        return ("### Pick a reward model under “Labelled by”\nAn SFT export writes each prompt's best reply by "
                "that model's scores (human labels rank pairs, not replies).")
    return curation.sft_preview(ctx.store, sft_filter(flt))


def sft_filter(flt: PairFilter) -> PairFilter:
    """The filter an SFT export uses: the pair-only fields (disabled in the tab) left out."""
    return replace(flt, **{name: None for name in PAIR_ONLY_INPUTS}, label=None)


def empty_preview(schema: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty breakdown and preview tables with the schema's columns."""
    columns = curation.SFT_PREVIEW_COLUMNS if schema == "sft" else curation.PREVIEW_COLUMNS
    return pd.DataFrame(columns=["labeler", "strategy", "pairs"]), pd.DataFrame(columns=columns)


def preview_outputs(ctx: AppContext, schema: str, values) -> tuple:
    """(count text, breakdown, first rows) for the tab; a filter that cannot be read leaves a toast and
    says so in the count (the last valid count must not stay as if it still held)."""
    try:
        result = preview_for(ctx, schema, values)
    except WorkbenchError as error:
        gr.Warning(str(error))
        return f"### No count: fix the filter\n{error}", *empty_preview(schema)
    if isinstance(result, str):
        return result, *empty_preview(schema)
    if schema == "sft":
        rows = render.fixed_decimals(result.rows, ["score"]).assign(response_id=result.rows["response_id"].str[:8])
        return result.summary(), result.breakdown, rows
    rows = render.fixed_decimals(result.rows, ["margin"]).assign(pair_id=result.rows["pair_id"].str[:8])
    return (result.summary() if result.store_pairs else NO_PAIRS), result.breakdown, rows


def waterfall_html(ctx: AppContext, schema: str, values) -> str:
    """The why-dropped waterfall of the export these filter values make: the manifest's `why_dropped`
    numbers, computed by the export's own function. A filter that cannot be read shows a line (the
    count beside it already raised the toast); an SFT export writes replies, so it has none."""
    if schema == "sft":
        return ('<div class="wb-waterfall-empty">An SFT export writes replies, not pairs: its manifest has no '
                "why-dropped waterfall.</div>")
    try:
        flt = to_filter(*values)
        flt.validate()
    except WorkbenchError as error:
        return f'<div class="wb-waterfall-empty">No waterfall: fix the filter ({escape(str(error))}).</div>'
    return waterfall.waterfall_svg(why_dropped(ctx.store, flt, ctx.index), flt)  # a busy store: a toast (user_errors)


def pair_only_updates(schema: str) -> tuple:
    """The pair-only filters disabled (and emptied) for an SFT export; the preview's column widths."""
    sft = schema == "sft"
    inputs = [gr.update(interactive=not sft, **({"value": ANY if name == "strategy" else ""} if sft else {}))
              for name in PAIR_ONLY_INPUTS]
    return *inputs, gr.update(column_widths=SFT_COLUMN_WIDTHS if sft else PAIR_COLUMN_WIDTHS)


def cleared_inputs() -> list:
    """The filter components' values with no filter set."""
    def empty(name):
        if name == "labeler" or field_type(name) is str:
            return ANY
        return False if field_type(name) is bool else ""

    return [empty(name) for name in FILTER_INPUTS]


def _input(name: str):
    """The component of one `PairFilter` field, labelled from its metadata."""
    label, kind = _FIELDS[name].metadata["label"], field_type(name)
    if kind is bool:
        return gr.Checkbox(label=label)
    if kind is str:
        return gr.Dropdown(label=label, choices=[ANY], value=ANY)
    return gr.Textbox(label=label, placeholder="any", min_width=90)


def filter_inputs() -> list:
    """Lay out the filter components; returns them in `FILTER_INPUTS` order."""
    made = {"source": _input("source"), "tag": _input("tag"),
            "labeler": gr.Dropdown(label="Labelled by", choices=[ANY], value=ANY,
                                   info="Human labels, or the reward model that ranked the pair."),
            "strategy": gr.Dropdown(label=_FIELDS["strategy"].metadata["label"], choices=[ANY, HUMAN, *STRATEGIES],
                                    value=ANY),
            "min_margin": _input("min_margin")}
    for low, high in (("min_score", "max_score"), ("min_chars", "max_chars")):
        with gr.Row():
            made[low], made[high] = _input(low), _input(high)
    gr.Markdown("<small>Score and length bounds apply to both replies of a pair.</small>")
    made["exclude_flagged"] = _input("exclude_flagged")
    made["exclude_contaminated"] = _input("exclude_contaminated")
    return [made[name] for name in FILTER_INPUTS]


def build(ctx: AppContext) -> dict:
    """Lay out the tab; returns {"filters": [components], "refresh_on": f}.

    Long on purpose (as every tab's `build`): Gradio wires events to the components made in the same
    Blocks context, so the callbacks are closures over them; the work itself is in plain functions.
    """
    gr.Markdown("Choose which pairs to export. The count follows every change and is exactly what the export "
                "writes: one pair per distinct prompt/chosen/rejected text (the largest margin wins).")
    with gr.Row():
        with gr.Column(scale=1, min_width=360):  # wide enough for "NAME@V (N scores, weights)"
            gr.Markdown("**Filters**")
            filters = filter_inputs()
            reset = gr.Button("Clear filters", size="sm")
        with gr.Column(scale=3):
            count = gr.Markdown(elem_id="curate-count")
            breakdown = gr.Dataframe(label="By labeler and strategy", interactive=False, max_height=180)
            with gr.Accordion("Why pairs are dropped: what each filter step removes", open=True):
                dropped = gr.HTML(elem_id="curate-waterfall")
            preview = gr.Dataframe(label="First rows of the export", interactive=False, wrap=True, max_height=420,
                                   elem_id="curate-preview", column_widths=PAIR_COLUMN_WIDTHS)
            with gr.Group():
                gr.Markdown("**Export** (files go to the export directory: "
                            f"`{ctx.export_dir}`)", padding=True)
                with gr.Row():
                    name = gr.Textbox(label="File name", value="dpo-pairs", scale=2,
                                      info="A name inside the export directory; the extension is added.")
                    fmt = gr.Radio(label="Format", choices=list(curation.UI_FORMATS), value="jsonl", scale=1)
                    schema = gr.Radio(label="Schema", choices=list(curation.UI_SCHEMAS), value="trl", scale=2,
                                      info="trl and xtuner: message lists; trl-standard: strings; sft: each "
                                           "prompt's best reply by the reward model under 'Labelled by'.")
                with gr.Row():
                    with_scores = gr.Checkbox(label="Add score columns")
                    with_provenance = gr.Checkbox(label="Add provenance columns (ids, labeler, run)")
                export = gr.Button("Export", variant="primary")
            exported = gr.Markdown(elem_id="export-result")
            download = gr.DownloadButton("Download the export", visible=False, elem_id="export-download")
            # Code, not JSON: Gradio would take the manifest's "path" key for a file to serve.
            manifest = gr.Code(label="Manifest", language="json", visible=False, interactive=False,
                               elem_id="export-manifest")

    source, tag, labeler = filters[:3]

    @user_errors
    def load_choices(current_source, current_tag, current_labeler):
        labelers = [(ANY, ANY), ("human labels", HUMAN), *overview.reward_model_choices(ctx.store)]
        return (*source_and_tag_dropdowns(ctx.store, current_source, current_tag),
                gr.Dropdown(choices=labelers, value=kept(current_labeler, [v for _, v in labelers], ANY)))

    @user_errors
    def update(*values):
        *values, schema_v = values  # the schema comes last, so API callers may leave it out (trl)
        return preview_outputs(ctx, schema_v, values)

    @user_errors
    def run_export(name_v, fmt_v, schema_v, scores_v, provenance_v, *values):
        flt = sft_filter(to_filter(*values)) if schema_v == "sft" else to_filter(*values)
        done = curation.export_curated(ctx.store, ctx.export_dir, name_v, flt, fmt=fmt_v,
                                       schema=schema_v, with_scores=scores_v, with_provenance=provenance_v)
        what = "SFT rows" if schema_v == "sft" else "pairs"
        text = f"Wrote **{done['rows']:,} {what}** to `{done['path']}`; the manifest is beside it."
        button = gr.DownloadButton(value=done["path"], visible=True, label=f"Download {Path(done['path']).name}")
        return text, button, gr.Code(value=json.dumps(done["manifest"], indent=2, default=str), visible=True)

    @user_errors
    def update_waterfall(*values):
        *values, schema_v = values
        return waterfall_html(ctx, schema_v, values)

    def then_waterfall(event, **api):
        # after the count, not beside it: the count reads the in-memory index (fast), the waterfall
        # runs the export's own query on the store (slower at scale); the count must not wait for it
        return event.then(update_waterfall, [*filters, schema], dropped, show_progress="hidden",
                          **(api or {"api_visibility": "private"}))

    outputs = [count, breakdown, preview]
    # Dropdowns and the checkbox on `input` (refreshing their choices must not trigger it), text
    # boxes on `change` (not every way of filling a box sends `input`).
    triggers = [f.change if isinstance(f, gr.Textbox) else f.input for f in filters]
    then_waterfall(gr.on(triggers, update, [*filters, schema], outputs, trigger_mode="always_last",
                         api_name="curate_preview"), api_name="curate_waterfall")
    pair_only = [dict(zip(FILTER_INPUTS, filters))[name] for name in PAIR_ONLY_INPUTS]
    then_waterfall(schema.input(pair_only_updates, schema, [*pair_only, preview], api_visibility="private").then(
        update, [*filters, schema], outputs, api_visibility="private"))
    then_waterfall(reset.click(cleared_inputs, None, filters, api_visibility="private").then(
        pair_only_updates, schema, [*pair_only, preview], api_visibility="private").then(
        update, [*filters, schema], outputs, api_visibility="private"))
    result = [exported, download, manifest]
    # A new export first clears the last one's result, so a refused export leaves its toast and no
    # stale "Wrote ..." line or manifest under it.
    export.click(lambda: ("", gr.DownloadButton(visible=False), gr.Code(value="", visible=False)), None, result,
                 api_visibility="private", show_progress="hidden").then(
        run_export, [name, fmt, schema, with_scores, with_provenance, *filters], result, api_name="export",
        show_progress="minimal")

    def refresh_on(listener) -> None:
        then_waterfall(listener(load_choices, [source, tag, labeler], [source, tag, labeler],
                                api_visibility="private").then(update, [*filters, schema], outputs,
                                                               api_visibility="private"))

    return {"filters": filters, "refresh_on": refresh_on}
