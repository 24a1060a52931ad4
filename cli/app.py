"""`workbench ui`: open the Gradio app on the store."""

from __future__ import annotations

import os

import click

from cli import Context, cli, pass_ctx


@cli.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback makes the app reachable from other machines "
                   "and needs --auth.")
@click.option("--port", type=int, default=7860, show_default=True)
@click.option("--auth", metavar="USER:PASS", envvar="WORKBENCH_UI_AUTH",
              help="Require this login (or set $WORKBENCH_UI_AUTH, which keeps it out of the process list).")
@click.option("--users", "users_file", type=click.Path(exists=True, dir_okay=False),
              help="A users file (`workbench review add-user FILE NAME` writes it): each user logs in with their "
                   "own password, and review labels record who gave them. Instead of --auth.")
@click.option("--export-dir", type=click.Path(file_okay=False),
              help="Where exports are written; names typed in the app stay inside it "
                   "(default: exports/ beside the store).")
@click.option("--runs-dir", type=click.Path(file_okay=False),
              help="Where trained reward models and job logs go (default: runs/ beside the store).")
@click.option("--models-dir", type=click.Path(exists=True, file_okay=False),
              help="Model directories and .gguf files under it may be used as policy or base model in the app "
                   "(besides smollm2 and the models the store already knows).")
@pass_ctx
def ui_command(ctx: Context, host, port, auth, users_file, export_dir, runs_dir, models_dir) -> None:
    """Open the app: overview, browse, Best-of-N sampling, curation and export, reward-model retraining.

    The app binds 127.0.0.1 and never creates a public share link; another --host needs --auth.
    The CLI keeps working on the same store while it is open. Closing the app (Ctrl+C, SIGTERM)
    stops the jobs it started.

    \b
    Example:
      workbench --db t.duckdb ui
      workbench --db t.duckdb ui --port 8080 --auth alice:s3cret --models-dir ~/models
      workbench --db t.duckdb ui --users users.txt   # several annotators for the Review tab
    """
    from workbench.review.users import read_users

    if auth and users_file:
        raise click.UsageError("give --auth (one login) or --users (a users file), not both")
    if users_file:
        read_users(users_file)  # a bad line is refused here (before gradio loads), naming the file and line

    from ui.app import launch, parse_auth
    from ui.exposure import check_exposure
    if auth is None and users_file is None and os.environ.get("WORKBENCH_UI_AUTH") is not None:
        raise click.BadParameter("$WORKBENCH_UI_AUTH is set but empty: set it to USER:PASS, or unset it "
                                 "to serve on loopback without a login", param_hint="--auth")
    try:
        parse_auth(auth)
        check_exposure(host, auth or users_file)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--auth") from None
    if not _port_is_free(host, port):
        raise click.ClickException(_busy(host, port))
    click.echo(f"Opening the app on {ctx.store.path} at http://{host}:{port} (Ctrl+C to stop).", err=True)
    try:
        launch(ctx.store, host=host, port=port, auth=auth, users_file=users_file, export_dir=export_dir,
               runs_dir=runs_dir, models_dir=models_dir, quiet=True)
    except OSError as error:  # taken between the check and Gradio's bind
        if _port_is_free(host, port):
            raise
        raise click.ClickException(_busy(host, port)) from error


def _port_is_free(host: str, port: int) -> bool:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return True  # not ours to judge: Gradio reports an unknown host itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def _busy(host: str, port: int) -> str:
    return (f"port {port} on {host} is busy (is the app already open at http://{host}:{port}?): "
            f"open it there, stop that process, or pass another, e.g. --port {port + 1}")
