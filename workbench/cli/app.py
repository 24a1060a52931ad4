"""`workbench ui`: open the Gradio app on the store."""

from __future__ import annotations

import ipaddress

import click

from workbench.cli import Context, cli, pass_ctx


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback makes the app reachable from other machines.")
@click.option("--port", type=int, default=7860, show_default=True)
@click.option("--auth", metavar="USER:PASS", envvar="WORKBENCH_UI_AUTH",
              help="Require this login (or set $WORKBENCH_UI_AUTH, which keeps it out of the process list).")
@click.option("--export-dir", type=click.Path(file_okay=False),
              help="Where exports are written; names typed in the app stay inside it "
                   "(default: exports/ beside the store).")
@click.option("--runs-dir", type=click.Path(file_okay=False),
              help="Where trained reward models and job logs go (default: runs/ beside the store).")
@pass_ctx
def ui_command(ctx: Context, host, port, auth, export_dir, runs_dir) -> None:
    """Open the app: overview, browse, Best-of-N sampling, curation and export, reward-model retraining.

    The app binds 127.0.0.1 and never creates a public share link. The CLI keeps working on the
    same store while it is open.

    \b
    Example:
      workbench --db t.duckdb ui
      workbench --db t.duckdb ui --port 8080 --auth alice:s3cret
    """
    from ui.app import launch, parse_auth

    try:
        parse_auth(auth)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--auth") from None
    if not _is_loopback(host) and not auth:
        click.echo(f"Warning: listening on {host} without --auth: anyone who can reach this machine can use the app.",
                   err=True)
    if not _port_is_free(host, port):
        raise click.ClickException(_busy(host, port))
    click.echo(f"Opening the app on {ctx.store.path} at http://{host}:{port} (Ctrl+C to stop).", err=True)
    try:
        launch(ctx.store, host=host, port=port, auth=auth, export_dir=export_dir, runs_dir=runs_dir, quiet=True)
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
