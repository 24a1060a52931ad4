"""Benchmark: how fast `workbench --help` and `workbench stats` start, and how much memory they take.

Each command runs as a fresh process, `--repeat` times; reported per command: wall time (min and
median, seconds), the largest resident set (max RSS, MB, from the kernel's accounting of that
child) and which heavy packages it imported. Baselines in the same run: an empty Python
(`python -c pass`), `python -c "import torch"`, and, with `--baseline-tree DIR`, the same
commands run from another checkout (e.g. the tree before the CLI was made lazy). Prints one
JSON object.

    python bench/cli_startup.py
    python bench/cli_startup.py --repeat 10 --baseline-tree /path/to/old/checkout

Target (issue 21, item 6): `stats` and `--help` under 0.5 s and 150 MB, without torch or transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "datasets", "gradio", "scipy", "pandas", "pyarrow", "numpy")
# Runs the CLI as `python -m workbench` would, then says which heavy packages got imported.
PROBE = """
import runpy, sys
sys.argv = ["workbench", *sys.argv[1:]]
try:
    runpy.run_module("workbench", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    if exit.code not in (0, None):
        raise
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def run_once(argv: list[str], tree: Path) -> tuple[float, float, str]:
    """(wall seconds, max RSS in MB, stderr) of one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{argv} failed ({child.returncode}): {stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stderr  # ru_maxrss is in KiB on Linux


def measure(argv: list[str], tree: Path, repeat: int) -> dict:
    runs = [run_once(argv, tree) for _ in range(repeat)]
    walls = [w for w, _, _ in runs]
    heavy = next((line.split("=", 1)[1] for line in runs[-1][2].splitlines() if line.startswith("HEAVY=")), None)
    return {"wall_s_min": round(min(walls), 3), "wall_s_median": round(statistics.median(walls), 3),
            "max_rss_mb": round(max(r for _, r, _ in runs), 1),
            **({"heavy_imports": heavy.split(",") if heavy else []} if heavy is not None else {})}


def cli_commands(db: Path) -> dict[str, list[str]]:
    probe = PROBE.format(heavy=HEAVY)
    return {"--help": [sys.executable, "-c", probe, "--help"],
            "stats": [sys.executable, "-c", probe, "--db", str(db), "stats"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs per command (min and median reported).")
    parser.add_argument("--baseline-tree", type=Path, help="Another checkout whose CLI to time the same way.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        run_once(cli_commands(db)["stats"], ROOT)  # creates the store (migrations) outside the timed runs
        results = {"python": sys.version.split()[0], "repeat": args.repeat, "machine_cpus": os.cpu_count(),
                   "baseline": {"python -c pass": measure([sys.executable, "-c", "pass"], ROOT, args.repeat),
                                "python -c 'import torch'": measure([sys.executable, "-c", "import torch"], ROOT,
                                                                    args.repeat)},
                   "workbench": {name: measure(argv, ROOT, args.repeat) for name, argv in cli_commands(db).items()}}
        if args.baseline_tree:
            results["baseline"]["tree"] = str(args.baseline_tree.resolve())
            for name, argv in cli_commands(db).items():
                results["baseline"][f"workbench {name} (baseline tree)"] = measure(argv, args.baseline_tree.resolve(),
                                                                                 args.repeat)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
