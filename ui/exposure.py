"""Who can reach the app: loopback without a login, anything wider only with one.

- `check_exposure(host, auth)` refuses a non-loopback address without `--auth`;
- `host_guard(host, auth)` is the middleware that, when no login is required, answers 400 to any
  request whose Host header is not the bound address or a loopback name. Without it a web page
  on another site could rebind its DNS name to 127.0.0.1 and drive the app from the user's own
  browser (DNS rebinding).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from workbench.runtime.loopback import allowed_hosts, is_loopback


def check_exposure(host: str, auth: str | None) -> None:
    """Refuse (ValueError) to serve on a non-loopback address without a login."""
    if not is_loopback(host) and not auth:
        raise ValueError(f"listening on {host} would let anyone who can reach this machine use the app: "
                         "add --auth USER:PASS (or set $WORKBENCH_UI_AUTH), or keep the default --host 127.0.0.1")


def host_guard(host: str, auth: str | None) -> list[Middleware]:
    """The middleware list for Gradio's FastAPI app: a Host check when there is no login, else none."""
    if auth:
        return []
    return [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))]
