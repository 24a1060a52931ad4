"""Which reward servers are running on a store, from the status files they keep beside it.

A running `workbench serve` rewrites `<store>.rm-server-<pid>.json` every second and removes it
when it stops. A file whose process is gone (the server was killed) or that has not been
rewritten for `STALE_S` seconds is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

STALE_S = 30.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def running_servers(store_path: str | os.PathLike) -> list[dict]:
    """Status dicts (pid, host, port, model, requests_served, rollouts_logged, ...) of live servers."""
    path = Path(store_path)
    found = []
    for file in sorted(path.parent.glob(f"{path.name}.rm-server-*.json")):
        try:
            status = json.loads(file.read_text())
            fresh = time.time() - file.stat().st_mtime < STALE_S
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and isinstance(status.get("pid"), int) and fresh and _alive(status["pid"]):
            found.append(status)
    return found


def server_lines(store_path: str | os.PathLike) -> str:
    """One Markdown line per running server ("" when none), for the app's Overview."""
    lines = []
    for s in running_servers(store_path):
        rollouts = f", {s['rollouts_logged']:,} rollouts logged" if s.get("log_to_store") else ", rollouts not logged"
        lines.append(f"**RM server** {s['model']} on http://{s['host']}:{s['port']}: "
                     f"{s['requests_served']:,} requests served{rollouts}.")
    return "\n\n".join(lines)
