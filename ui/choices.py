"""Dropdown choices that follow the store: the one refresh the Sample and Curate tabs share, and the
models the app may load (Sample's policy, Retrain's base model)."""

from __future__ import annotations

import gradio as gr

from ui.inputs import ANY
from workbench.models.allowed_models import AllowedModels
from workbench.curate.browse import filter_choices
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


def model_dropdown(allowed: AllowedModels, store: Store, current) -> gr.Dropdown:
    """A policy or base-model dropdown offering what `allowed` lets the app load, keeping the current
    value (a typed one is checked when the job starts)."""
    return gr.Dropdown(choices=allowed.choices(store), value=current)
