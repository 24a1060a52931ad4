"""Which host addresses are this machine only: the one rule for `workbench serve` and `workbench ui`.

Both listen on loopback without a key or login, and refuse anything wider without one.
"""

from __future__ import annotations

import ipaddress

# The names a loopback address goes by in a URL's host (an IPv6 address in brackets there).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name, an IPv4 or IPv6 address, bracketed or not) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """Host header values accepted when no login/key is required: the bound address and loopback names."""
    return sorted({host, *LOOPBACK_NAMES})
