"""`workbench serve`: a registered reward model as an HTTP reward service for RL trainers."""

from __future__ import annotations

import click

from cli import Context, cli, dataclass_options, emit_json, pass_ctx
from workbench.serving.config import ServeConfig

@cli.command("serve")
@click.option("--rm", required=True, help="Reward model: NAME, NAME@VERSION, id or a directory.")
@dataclass_options(ServeConfig)
@pass_ctx
def serve_command(ctx: Context, rm, **options) -> None:
    """Serve a reward model over HTTP for RL: OpenRLHF's /get_reward, /v1/score, /health, /metrics.

    Requests that arrive within --max-wait-ms are scored together as packed rows. Binds
    127.0.0.1 unless told otherwise; another address needs an API key. Stop with Ctrl+C or
    SIGTERM: the requests in flight are answered, the rollouts committed, then it exits 0.

    \b
    Example:
      workbench serve --rm demo-rm --port 8000 --log-to-store
      # OpenRLHF: --remote_rm_url http://127.0.0.1:8000/get_reward
      RM_KEY=s3cret workbench serve --rm demo-rm --host 0.0.0.0 --api-key-env RM_KEY
    """
    from workbench.serving.server import api_key_from_env, serve

    config = ServeConfig(**options)
    api_key = api_key_from_env(config.api_key_env)
    config.validate(api_key)

    def ready(server, web) -> None:
        host, port = server.address
        click.echo(f"Serving {server.model_name} on http://{host}:{port} (POST /get_reward, /v1/score; "
                   f"GET /health, /metrics){' with rollouts logged to ' + str(ctx.store.path) if config.log_to_store else ''}. "
                   "Ctrl+C to stop.", err=True)

    final = serve(ctx.store, rm, config, api_key=api_key, on_ready=ready)
    click.echo(f"Server stopped{' by ' + final['stopped_by'] if final['stopped_by'] else ''}: "
               f"{final['requests_served']:,} requests served, {final['rollouts_logged']:,} rollouts logged.", err=True)
    if not ctx.quiet:
        emit_json({k: final[k] for k in ("model", "requests_served", "rollouts_logged")})
