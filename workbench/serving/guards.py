"""Who may call the reward server, and how: the API key, the Host and Origin headers, the Content-Type.

Checked for every request before the app sees it (`request_refusal`):

- with an API key, `Authorization: Bearer KEY` must match, compared as bytes in constant time.
  The key is matched in UTF-8 (what curl, httpx and browsers send) and, when it can be written
  so, in latin-1 (what `requests`, OpenRLHF's client, sends for a str header);
- without a key (loopback only), the Host header must be the bound address or a loopback name,
  the rule the app uses (`allowed_hosts`): a web page that rebinds its DNS name to 127.0.0.1
  cannot reach the server from the user's browser;
- a request with an Origin header whose host and port are not those of the Host header is a
  browser request from another site: refused whatever the key;
- POST bodies must be `application/json`. A page may send `text/plain`, form or multipart
  bodies (and bodies without a type) to any site without asking first; JSON makes the browser
  ask (a CORS preflight the server never grants), so no page can post rewards into the store.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from workbench.runtime.loopback import allowed_hosts  # one Host rule: the app and the reward server


class ApiError(Exception):
    """A refused request: its HTTP status and one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def host_name(netloc: str) -> str:
    """The host part of a Host header or URL netloc (`[::1]:8000` -> `[::1]`), lowercased."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[:netloc.find("]") + 1] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def key_matches(header: bytes, key: str) -> bool:
    """Whether a raw Authorization header carries `Bearer KEY` (UTF-8, or latin-1 where possible)."""
    expected = [b"Bearer " + key.encode("utf-8")]
    try:
        expected.append(b"Bearer " + key.encode("latin-1"))
    except UnicodeEncodeError:
        expected.append(expected[0])
    matches = [hmac.compare_digest(header, candidate) for candidate in expected]  # both, always
    return any(matches)


def _headers(scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _origin_netloc(origin: bytes) -> str | None:
    try:
        return urlsplit(origin.decode("latin-1")).netloc.lower() or None  # "null": a sandboxed page
    except ValueError:  # not a URL
        return None


def request_refusal(scope, bound_host: str, api_key: str | None) -> ApiError | None:
    """Why this request is refused (401, 400, 403, 415), or None (see the module docstring)."""
    headers = _headers(scope)
    if api_key is not None and not key_matches(headers.get(b"authorization", b""), api_key):
        return ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'")
    host = headers.get(b"host", b"").decode("latin-1")
    if api_key is None and host_name(host) not in allowed_hosts(bound_host.lower()):
        return ApiError(400, f"Host {host[:100]!r} is not this server's address; without an API key only "
                             f"loopback names are served ({', '.join(allowed_hosts(bound_host))})")
    origin = headers.get(b"origin")
    if origin is not None and _origin_netloc(origin) != host.strip().lower():
        return ApiError(403, "cross-origin requests are refused: a web page on another site cannot use this server")
    if scope.get("method") == "POST":
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            return ApiError(415, "send the body as JSON with 'Content-Type: application/json'")
    return None
