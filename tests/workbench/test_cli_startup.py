"""`workbench --help` and `workbench stats` start at once: they load no model code (issue 21, item 6).

Each runs as `python -m workbench` would, in a fresh process, which then reports the heavy packages
it imported. Commands import the engine, pyarrow and the app inside their bodies; a module-level
import in `cli/` (or in a module it imports for an option's choices) fails this test.
Times and memory are measured by `bench/cli_startup.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL_CODE = ("torch", "transformers", "datasets", "gradio", "scipy", "engine.scoring", "engine.reward_model")
# not model code, but most of what remained of the start-up time once torch was gone
SLOW_TO_IMPORT = ("pyarrow", "pandas", "numpy")
PROBE = """
import json, runpy, sys
sys.argv = ["workbench", *sys.argv[1:]]
try:
    runpy.run_module("workbench", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    if exit.code not in (0, None):
        raise
print(json.dumps(sorted(m for m in {names!r} if m in sys.modules)), file=sys.stderr)
"""


def _imported(*args: str) -> tuple[list[str], str]:
    """(which of MODEL_CODE + SLOW_TO_IMPORT the command imported, its stdout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(names=MODEL_CODE + SLOW_TO_IMPORT), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


@pytest.mark.parametrize("args", [["--help"], ["--db", "{db}", "stats"], ["--db", "{db}", "stats", "--json"]])
def test_help_and_stats_import_no_model_code(tmp_path, args):
    args = [a.format(db=tmp_path / "s.duckdb") for a in args]
    imported, out = _imported(*args)
    assert "stats" in out  # the command ran: the help lists it, stats prints the store's counts
    model_code = [m for m in imported if m in MODEL_CODE]
    assert not model_code, f"`workbench {' '.join(args)}` imported {model_code}: import them inside the command body"
    slow = [m for m in imported if m in SLOW_TO_IMPORT]
    assert not slow, f"`workbench {' '.join(args)}` imported {slow}: import them where they are used"
