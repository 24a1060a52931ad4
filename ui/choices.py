"""Dropdown choices that follow the store: the one refresh the Sample and Curate tabs share."""

from __future__ import annotations

import gradio as gr

from ui.inputs import ANY
from workbench.browse import filter_choices
from workbench.store import Store


def kept(current, values: list, default):
    """`current` while it is still among `values`, else `default`."""
    return current if current in values else default


def source_and_tag_dropdowns(store: Store, current_source, current_tag) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The Source and Tag dropdowns with the store's sources and tags, keeping the current picks."""
    found = filter_choices(store)
    sources, tags = [ANY, *found["sources"]], [ANY, *found["tags"]]
    return (gr.Dropdown(choices=sources, value=kept(current_source, sources, ANY)),
            gr.Dropdown(choices=tags, value=kept(current_tag, tags, ANY)))
