"""The DPO Workbench app: `build_app(store)` lays out the tabs and wires each control to a
`workbench` function; `launch(...)` serves it. Importing this module starts nothing.

    from ui import build_app, launch
    demo = build_app(Store("t.duckdb"))            # a gr.Blocks, not running
    demo, url = launch(Store("t.duckdb"), block=False)

Limits: at most one training and one sampling/scoring job at a time per store (`workbench.runtime.jobs`),
bounded inputs (`workbench.runtime.commands.MAX_*`), a bounded request queue, models only from the places
`workbench.models.allowed_models` lists, exports in Gradio's cache deleted after an hour, and a Host
check when no login is required (`ui.exposure`). The app's jobs stop when it exits.

Concurrency: the app holds no store connection while idle. Every callback opens the store for
one short read (`Store.connect`), long work runs as `workbench` CLI processes (`workbench.runtime.jobs`),
and DuckDB's single-writer file lock is waited out with retries, so the CLI, background jobs and
several browser tabs share one store file.
"""

from __future__ import annotations

import atexit
import signal
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from ui import browse_tab, compare_tab, curate_tab, overview_tab, retrain_tab, review_tab, rounds_tab, sample_tab
from ui.context import AppContext
from ui.curve import CSS as CURVE_CSS
from ui.exposure import check_exposure, host_guard, is_loopback
from ui.render import CSS
from ui.review_tab import CSS as REVIEW_CSS
from ui.review_tab import KEYBOARD_JS
from ui.waterfall import CSS as WATERFALL_CSS
from workbench.store import Store

TITLE = "DPO Workbench"
QUEUE_MAX_SIZE = 64             # waiting requests; more are refused with "queue is full"
DELETE_CACHE = (600, 3600)      # every 10 minutes, delete files Gradio served (exports) older than an hour
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # besides Ctrl+C (SIGINT): stop the jobs, then the app


def build_app(store: Store, *, export_dir: str | Path | None = None, runs_dir: str | Path | None = None,
              models_dir: str | Path | None = None) -> gr.Blocks:
    """The app as a `gr.Blocks` (not launched). `export_dir` and `runs_dir` default to
    `exports/` and `runs/` beside the store file; `models_dir` adds the models under it to those
    the app may load (`workbench.models.allowed_models`)."""
    ctx = AppContext.create(store, export_dir, runs_dir, models_dir)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
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
            with gr.Tab("Rounds", id="rounds") as rounds_t:
                rounds = rounds_tab.build(ctx)
            with gr.Tab("Review", id="review") as review_t:
                review = review_tab.build(ctx)
        # Each tab reloads what it shows when opened: the CLI or another tab may have changed the store.
        overview["refresh_on"](demo.load)
        for tab, parts in ((overview_t, overview), (browse_t, browse), (sample_t, sample), (curate_t, curate),
                           (retrain_t, retrain), (compare_t, compared), (rounds_t, rounds), (review_t, review)):
            parts["refresh_on"](tab.select)
    demo.workbench = ctx  # for tests and `close_app`
    return demo


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """'USER:PASS' as a (user, password) pair for Gradio's login page; None for no login (an
    empty string is refused: an empty $WORKBENCH_UI_AUTH must not silently mean "no login")."""
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth takes USER:PASS, e.g. --auth alice:s3cret")
    return user, password


def login_check(auth: str | None, users_file: str | Path | None):
    """What Gradio's login page checks: the one --auth pair, a function over the users file
    (`workbench.review.users`; read now, so a bad line refuses the launch), or None for no login."""
    if users_file is None:
        return parse_auth(auth)
    from workbench.review.users import check_password, read_users

    users = read_users(users_file)
    return lambda name, password: check_password(users, name, password)


def launch(store: Store, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
           users_file: str | Path | None = None, export_dir: str | Path | None = None, runs_dir: str | Path | None = None,
           models_dir: str | Path | None = None, block: bool = True, quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Serve the app on host:port (never a public share link); with `auth`, visitors log in first.
    A non-loopback host without `auth` is refused (ValueError).

    `users_file` (instead of `auth`): each user of the file logs in with their own password, and the
    Review tab records labels under that name.

    With block=False it returns at once (the server runs in a thread): call `close_app(demo)`.
    With block=True it serves until Ctrl+C, SIGTERM or SIGHUP, then stops the app's jobs
    (`jobs_stop_with_the_app`).
    """
    if auth and users_file:
        raise ValueError("give auth (one login) or users_file, not both")
    credentials = login_check(auth, users_file)
    login = auth or (str(users_file) if users_file else None)
    check_exposure(host, login)
    demo = build_app(store, export_dir=export_dir, runs_dir=runs_dir, models_dir=models_dir)
    # Two tabs (or two people) do not wait on each other; a flood of requests is refused, not queued.
    demo.queue(default_concurrency_limit=8, max_size=QUEUE_MAX_SIZE)
    ctx: AppContext = demo.workbench

    def serve() -> str:
        _, local_url, _ = demo.launch(
            server_name=host, server_port=port, share=False, auth=credentials, prevent_thread_lock=True,
            # quiet: Gradio would add "To create a public link, set share=True", which this app never does
            allowed_paths=[str(ctx.export_dir)], show_error=False, quiet=True, ssr_mode=False, run_history=False,
            footer_links=["api", "settings"], css=CSS + CURVE_CSS + WATERFALL_CSS + REVIEW_CSS,
            theme=gr.themes.Soft(), mcp_server=False, head=KEYBOARD_JS,
            app_kwargs={"middleware": host_guard(host, login)},
        )
        if not quiet:
            reach = "this machine only" if is_loopback(host) else "with a login"
            print(f"* Running on {local_url} ({reach}; the app never makes a public share link)", flush=True)
        return local_url

    if not block:
        return demo, serve()
    url = None
    with jobs_stop_with_the_app(demo):  # before the server starts: no job can slip through
        url = serve()
        demo.block_thread()
    return demo, url


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # Gradio's block_thread closes the server on it


@contextmanager
def jobs_stop_with_the_app(demo: gr.Blocks):
    """While inside, SIGTERM and SIGHUP interrupt like Ctrl+C; on leaving (by any of them, or
    normally), stop the app's jobs (their process groups: SIGINT, then SIGTERM, then SIGKILL) and
    the server. Jobs run in their own sessions, so nothing else would stop them; an exit by any
    other path stops them through `atexit`."""
    ctx: AppContext = demo.workbench
    atexit.register(ctx.jobs.shutdown)
    # SIGINT too: a process started with SIGINT ignored (a background job of a script; the test suite,
    # after some library left it ignored in pytest's process) inherits SIG_IGN, and Ctrl+C would do nothing.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, *STOP_SIGNALS)}
    try:
        yield
    except KeyboardInterrupt:
        pass  # the way to stop the app: not an error
    finally:
        # A second Ctrl+C must not cut the shutdown short and leave jobs running.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            close_app(demo)
        finally:
            atexit.unregister(ctx.jobs.shutdown)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def close_app(demo: gr.Blocks) -> None:
    """Stop the app's running jobs, then the server."""
    ctx: AppContext | None = getattr(demo, "workbench", None)
    if ctx is not None:
        ctx.jobs.shutdown()
    demo.close()
