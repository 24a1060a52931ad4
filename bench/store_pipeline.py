"""Benchmark: import 1M Best-of-N responses, build best-vs-worst pairs, export 100k pairs.

Runs each step in a fresh subprocess (so peak memory is per step) for the workbench and for the
obvious pandas + json implementation of the same three steps, and prints one JSON object.

    python bench/store_pipeline.py                      # 125,000 prompts x 8 responses
    python bench/store_pipeline.py --prompts 20000      # a quicker look

Targets (issue #2): the workbench >= 5x faster than the baseline; the 1M import under 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the a model reward answer helpful careful quick brown fox data pair prompt reply token user "
         "assistant sample policy score margin length safe clear polite wrong right maybe always never").split()


def make_input(path: Path, prompts: int, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(prompts):
            prompt = f"Question {i}: " + " ".join(rng.choices(WORDS, k=12)) + "?"
            responses = [" ".join(rng.choices(WORDS, k=rng.randint(8, 40))) for _ in range(n)]
            scores = [round(rng.gauss(0, 1), 4) for _ in range(n)]
            f.write(json.dumps({"prompt": prompt, "responses": responses, "scores": scores}) + "\n")


# --- the workbench ------------------------------------------------------------------------

def workbench_step(step: str, work: Path, data: Path, export_rows: int) -> dict:
    from workbench.exports.export import export_pairs
    from workbench.curate.pair_filter import PairFilter
    from workbench.ingest.importer import import_files
    from workbench.curate.pairs import build_pairs
    from workbench.store import Store

    store = Store(work / "bench.duckdb")
    if step == "import":
        result = import_files(store, [data], fmt="bon", score_name="bench-rm", progress=False)
        return {"responses": result.new_responses, "prompts": result.new_prompts}
    if step == "pairs":
        result = build_pairs(store, "bench-rm", "best-vs-worst", progress=False)
        return {"pairs": result.new_pairs}
    result = export_pairs(store, work / "wb.jsonl", pair_filter=PairFilter(limit=export_rows))
    return {"rows": result.rows}


# --- the baseline: pandas + json ------------------------------------------------------------

def baseline_step(step: str, work: Path, data: Path, export_rows: int) -> dict:
    import hashlib

    import pandas as pd

    if step == "import":
        rows = []
        with open(data) as f:
            for line in f:
                record = json.loads(line)
                pid = hashlib.sha256(record["prompt"].encode()).hexdigest()[:32]
                for text, score in zip(record["responses"], record["scores"]):
                    rid = hashlib.sha256((pid + text).encode()).hexdigest()[:32]
                    rows.append({"prompt_id": pid, "prompt": record["prompt"], "response_id": rid,
                                 "text": text, "score": score})
        df = pd.DataFrame(rows).drop_duplicates("response_id")
        df.to_parquet(work / "baseline.parquet")
        return {"responses": len(df), "prompts": df["prompt_id"].nunique()}
    if step == "pairs":
        df = pd.read_parquet(work / "baseline.parquet")
        best = df.loc[df.groupby("prompt_id")["score"].idxmax()]
        worst = df.loc[df.groupby("prompt_id")["score"].idxmin()]
        pairs = best.merge(worst, on="prompt_id", suffixes=("_chosen", "_rejected"))
        pairs = pairs[pairs["score_chosen"] > pairs["score_rejected"]]
        pairs[["prompt_id", "prompt_chosen", "text_chosen", "text_rejected", "score_chosen",
               "score_rejected"]].to_parquet(work / "baseline_pairs.parquet")
        return {"pairs": len(pairs)}
    pairs = pd.read_parquet(work / "baseline_pairs.parquet").head(export_rows)
    with open(work / "baseline.jsonl", "w") as f:
        for row in pairs.itertuples():
            f.write(json.dumps({"prompt": [{"role": "user", "content": row.prompt_chosen}],
                                "chosen": [{"role": "assistant", "content": row.text_chosen}],
                                "rejected": [{"role": "assistant", "content": row.text_rejected}]}) + "\n")
    return {"rows": len(pairs)}


def run_step(impl: str, step: str, work: Path, data: Path, export_rows: int) -> dict:
    """Run one step in a child process; return its wall time, peak RSS and result."""
    code = (f"import json, sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            f"import store_pipeline as b; from pathlib import Path; t = time.perf_counter();"
            f"r = b.{impl}_step({step!r}, Path({str(work)!r}), Path({str(data)!r}), {export_rows});"
            f"import resource; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            f"print(json.dumps({{'seconds': time.perf_counter() - t, 'result': r, 'peak_rss_kb': peak}}))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"{impl} {step} failed:\n{child.stderr}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    measured["peak_rss_mb"] = round(measured.pop("peak_rss_kb") / 1024, 1)  # the child's own peak
    measured["seconds"] = round(measured["seconds"], 2)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--export-rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "bon.jsonl"
        make_input(data, args.prompts, args.n)
        report = {"prompts": args.prompts, "responses": args.prompts * args.n,
                  "input_mb": round(data.stat().st_size / 2**20, 1), "steps": {}}
        for impl in ("baseline", "workbench"):
            for step in ("import", "pairs", "export"):
                report["steps"].setdefault(step, {})[impl] = run_step(impl, step, work, data, args.export_rows)
        for step, both in report["steps"].items():
            both["speedup"] = round(both["baseline"]["seconds"] / both["workbench"]["seconds"], 2)
        total = {impl: sum(report["steps"][s][impl]["seconds"] for s in report["steps"])
                 for impl in ("baseline", "workbench")}
        report["total_seconds"] = {k: round(v, 2) for k, v in total.items()}
        report["total_speedup"] = round(total["baseline"] / total["workbench"], 2)
        report["import_under_30s"] = report["steps"]["import"]["workbench"]["seconds"] < 30
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
