"""`bench/dedup_vs_datasketch.py` on a few hundred prompts: both sides read the same normalised words
and flag the same prompts (the timing itself is the bench's job, not a test's)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_dedup_bench_finds_what_datasketch_finds(tmp_path):
    pytest.importorskip("datasketch")
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "dedup_vs_datasketch.py"), "--prompts", "600",
                             "--work", str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["normalisation_mismatches"] == 0 and report["workbench_runs_agree"]
    assert report["flags"]["workbench"]["exact"] > 0 and report["flags"]["workbench"]["near"] > 0
    agreement = report["agreement"]
    assert agreement["exact_flags_equal"] and agreement["planted_near_at_or_above_threshold"] > 0
    assert agreement["recall_workbench"] == agreement["recall_datasketch"] == 1.0
    assert agreement["near_jaccard"] == 1.0 and agreement["same_original_when_both"] == 1.0
    assert report["seconds"]["datasketch"] > 0 and report["ratio_datasketch_over_duckdb_1_thread"] > 0
