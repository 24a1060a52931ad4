"""The DPO Workbench app: `build_app(store)` lays out the tabs and wires each control to a
`workbench` function; `launch(...)` serves it. Importing this module starts nothing.

    from ui import build_app, launch
    demo = build_app(Store("t.duckdb"))            # a gr.Blocks, not running
    demo, url = launch(Store("t.duckdb"), block=False)

Concurrency: the app holds no store connection while idle. Every callback opens the store for
one short read (`Store.connect`), long work runs as `workbench` CLI processes (`workbench.jobs`),
and DuckDB's single-writer file lock is waited out with retries, so the CLI, background jobs and
several browser tabs share one store file.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ui import browse_tab, compare_tab, curate_tab, overview_tab, retrain_tab, sample_tab
from ui.context import AppContext
from ui.render import CSS
from workbench.store import Store

TITLE = "DPO Workbench"


def build_app(store: Store, *, export_dir: str | Path | None = None, runs_dir: str | Path | None = None) -> gr.Blocks:
    """The app as a `gr.Blocks` (not launched). `export_dir` and `runs_dir` default to
    `exports/` and `runs/` beside the store file."""
    ctx = AppContext.create(store, export_dir, runs_dir)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nStore `{store.path}` · reward models, Best-of-N sampling, curation and DPO export.")
        with gr.Tabs():
            with gr.Tab("Overview", id="overview") as overview_t:
                overview = overview_tab.build(ctx)
            with gr.Tab("Browse", id="browse") as browse_t:
                browse = browse_tab.build(ctx)
            with gr.Tab("Sample", id="sample") as sample_t:
                sample = sample_tab.build(ctx)
            with gr.Tab("Curate & export", id="curate") as curate_t:
                curate = curate_tab.build(ctx)
            with gr.Tab("Retrain", id="retrain") as retrain_t:
                retrain = retrain_tab.build(ctx, curate["filters"])
            with gr.Tab("Compare reward models", id="compare") as compare_t:
                compared = compare_tab.build(ctx)
        # Each tab reloads what it shows when opened: the CLI or another tab may have changed the store.
        overview["refresh_on"](demo.load)
        for tab, parts in ((overview_t, overview), (browse_t, browse), (sample_t, sample), (curate_t, curate),
                           (retrain_t, retrain), (compare_t, compared)):
            parts["refresh_on"](tab.select)
    demo.workbench = ctx  # for tests and `close_app`
    return demo


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """'USER:PASS' as a (user, password) pair for Gradio's login page."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth takes USER:PASS, e.g. --auth alice:s3cret")
    return user, password


def launch(store: Store, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
           export_dir: str | Path | None = None, runs_dir: str | Path | None = None, block: bool = True,
           quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Serve the app on host:port (never a public share link); with `auth`, visitors log in first.

    With block=False it returns at once (the server runs in a thread): call `close_app(demo)`.
    """
    credentials = parse_auth(auth)
    demo = build_app(store, export_dir=export_dir, runs_dir=runs_dir)
    demo.queue(default_concurrency_limit=8)  # two tabs (or two people) do not wait on each other
    ctx: AppContext = demo.workbench
    _, url, _ = demo.launch(
        server_name=host, server_port=port, share=False, auth=credentials, prevent_thread_lock=True,
        allowed_paths=[str(ctx.export_dir)], show_error=False, quiet=quiet, ssr_mode=False, run_history=False,
        footer_links=["api", "settings"], css=CSS, theme=gr.themes.Soft(), mcp_server=False,
    )
    if block:
        try:
            demo.block_thread()
        finally:
            close_app(demo)
    return demo, url


def close_app(demo: gr.Blocks) -> None:
    """Stop the app's running jobs, then the server."""
    ctx: AppContext | None = getattr(demo, "workbench", None)
    if ctx is not None:
        ctx.jobs.shutdown()
    demo.close()
