"""The options that point `sample`, `bon` and `score` at inference servers instead of a local model.

The command receives them as one `served` argument: a `workbench.endpoints.sampling.ServedModel`,
or None when no `--endpoint` was given (the command then runs its local model as before).
"""

from __future__ import annotations

from functools import wraps

import click


def endpoint_options(apis: tuple[str, ...], default_api: str, api_help: str):
    """`--endpoint` (repeatable: replicas), `--model`, `--api`, `--api-key-env`, `--concurrency`,
    `--request-timeout`, `--max-attempts`; `apis` are the values `--api` takes for this command."""

    def decorate(command):
        @wraps(command)
        def wrapper(*args, endpoint, model, api, api_key_env, concurrency, request_timeout, max_attempts,
                    prompt_template=None, **kwargs):
            served = None
            if endpoint:
                from workbench.endpoints.replicas import RetryPolicy
                from workbench.endpoints.sampling import ServedModel

                if max_attempts < 1 or request_timeout <= 0:
                    raise click.BadParameter("--max-attempts must be >= 1 and --request-timeout > 0")
                served = ServedModel(list(endpoint), model, api, api_key_env,
                                     RetryPolicy(timeout_s=request_timeout, max_attempts=max_attempts),
                                     concurrency, prompt_template)
            elif model or api_key_env:
                raise click.UsageError("--model and --api-key-env go with --endpoint URL")
            return command(*args, served=served, **kwargs)

        options = [
            click.option("--endpoint", multiple=True, metavar="URL",
                         help="Base URL of a server (e.g. http://127.0.0.1:8000); repeat it for replicas, "
                              "which share the requests. Without it the local model runs."),
            click.option("--model", help="Model name to ask the server for. Default: the one model it lists."),
            click.option("--api", type=click.Choice(apis), default=default_api, show_default=True, help=api_help),
            click.option("--api-key-env", metavar="VAR",
                         help="Environment variable holding the API key (sent as a Bearer token, never recorded)."),
            click.option("--concurrency", type=int, default=16, show_default=True,
                         help="Requests in flight at once, over all endpoints."),
            click.option("--request-timeout", type=float, default=120.0, show_default=True,
                         help="Seconds one request may take before it is retried."),
            click.option("--max-attempts", type=int, default=6, show_default=True,
                         help="Tries per request (429, 5xx, timeouts and dropped connections are retried "
                              "with exponential backoff and jitter)."),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


prompt_template_option = click.option(
    "--prompt-template", metavar="DIR",
    help="With --api completions: the tokenizer (directory or smollm2) whose chat template renders prompts.")
