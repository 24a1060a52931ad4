"""Browse tab: a page of prompts (search, filter, sort, paging on the server) and one prompt's
responses side by side. Everything comes from `workbench.curate.browse`."""

from __future__ import annotations

import gradio as gr

from ui import render
from ui.context import AppContext
from ui.inputs import ANY, or_none
from ui.errors import user_errors
from workbench.curate import browse

NO_PROMPTS = "The store has no prompts yet: import some with `workbench import FILE`."


def build(ctx: AppContext) -> dict:
    """Lay out the Browse tab and wire it to `workbench.curate.browse`."""
    gr.Markdown("Find prompts, then click a row to see all its responses side by side with their scores, "
                "the Best-of-N pick, finish reason and curation flags. Search runs on the server, over every prompt.")
    with gr.Row():
        search = gr.Textbox(label="Search prompt text", placeholder="words in the prompt, then Enter", scale=3)
        source = gr.Dropdown(label="Source", choices=[ANY], value=ANY, scale=2)
        tag = gr.Dropdown(label="Tag", choices=[ANY], value=ANY, scale=1)
        sort = gr.Dropdown(label="Sort by", choices=list(browse.SORTS), value="newest", scale=1)
    with gr.Row(equal_height=False):
        prev_page = gr.Button("◀ Previous", size="sm", scale=0, min_width=110)
        page = gr.Number(label="Page", value=1, precision=0, minimum=1, scale=0, min_width=90, show_label=False)
        next_page = gr.Button("Next ▶", size="sm", scale=0, min_width=110)
        caption = gr.Markdown(elem_id="browse-caption")
    table = gr.Dataframe(headers=browse.PAGE_COLUMNS, interactive=False, wrap=True, max_height=520,
                         column_widths=["46%", "10%", "8%", "7%", "7%", "6%", "16%"], elem_id="prompt-table")
    with gr.Row():
        prompt_id = gr.Textbox(label="Prompt id", placeholder="click a row above, or paste an id and press Enter",
                               scale=4, elem_id="browse-prompt-id")
    detail = gr.HTML(render.empty("Click a prompt in the table to see its responses."), elem_id="prompt-detail")

    @user_errors
    def load_choices(current_source, current_tag):
        choices = browse.filter_choices(ctx.store)
        sources, tags = [ANY, *choices["sources"]], [ANY, *choices["tags"]]
        return (gr.Dropdown(choices=sources, value=current_source if current_source in sources else ANY),
                gr.Dropdown(choices=tags, value=current_tag if current_tag in tags else ANY))

    @user_errors
    def load_page(search_text, source_value, tag_value, sort_value, page_number):
        query = browse.PromptQuery(search=search_text, source=or_none(source_value), tag=or_none(tag_value),
                                   sort=sort_value, page=int(page_number or 1))
        result = browse.prompt_page(ctx.store, query)
        text = result.caption() if result.total or search_text or or_none(source_value) or or_none(tag_value) \
            else NO_PROMPTS
        return result.rows, result.page, text

    @user_errors
    def show_prompt(pid):
        return render.prompt_detail(browse.prompt_detail(ctx.store, pid))

    def pick_row(evt: gr.SelectData):
        row = evt.row_value or []
        return row[-1] if row else gr.skip()

    inputs = [search, source, tag, sort, page]
    outputs = [table, page, caption]

    def first_page(*values):
        return load_page(*values[:-1], 1)

    gr.on([search.submit, source.input, tag.input, sort.input], first_page, inputs, outputs,
          trigger_mode="always_last", api_visibility="private")
    page.submit(load_page, inputs, outputs, api_name="browse_page")
    prev_page.click(lambda *v: load_page(*v[:-1], max(1, int(v[-1] or 1) - 1)), inputs, outputs,
                    api_visibility="private")
    next_page.click(lambda *v: load_page(*v[:-1], int(v[-1] or 1) + 1), inputs, outputs, api_visibility="private")
    table.select(pick_row, None, prompt_id, api_visibility="private").then(show_prompt, prompt_id, detail,
                                                                           api_visibility="private")
    prompt_id.submit(show_prompt, prompt_id, detail, api_name="prompt_detail")

    def refresh_on(listener) -> None:
        listener(load_choices, [source, tag], [source, tag], api_visibility="private").then(
            load_page, inputs, outputs, api_visibility="private")

    return {"refresh_on": refresh_on}
