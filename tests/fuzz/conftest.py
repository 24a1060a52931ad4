"""Shared conventions of the fuzz targets in tests/fuzz (see docs/fuzzing.md).

Every target is marked `fuzz` and runs `WORKBENCH_FUZZ_EXAMPLES` cases (20 by default, a smoke in
the normal test run; `WORKBENCH_FUZZ_EXAMPLES=10000 pytest -m fuzz tests/fuzz` is the full run),
with `deadline=None` (a case's time depends on the machine) and `database=None` (no example
database is kept: failures found are turned into explicit regression tests instead).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    """Every test under tests/fuzz is a fuzz test, marked or not (so `-m "not fuzz"` leaves them all out)."""
    for item in items:
        if "tests/fuzz/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("fuzz/"):
            item.add_marker(pytest.mark.fuzz)
