"""Benchmark: the store at ten million responses, each step beside the raw-DuckDB floor for the same work.

Generates a Best-of-N file (1M prompts x 10 responses by default, reply lengths drawn from a
log-normal around 400 characters), then runs each step in its own child process (peak RSS is per
step) twice: the workbench's own code path, and the least work DuckDB itself needs for the same
result (no ids checked, no provenance, no transaction bookkeeping). Prints one JSON object.

    python bench/store_scale.py                            # 1,000,000 prompts x 10
    python bench/store_scale.py --prompts 100000           # a quicker look (1M responses)

Steps: import (the bulk lane) | scores (10M score rows of a second reward model, the bookkeeping
`workbench score` does after the model: insert_new) | pairs (best-vs-worst) | filter (the app's
Curate count for a filter change: p50 over filters, after the index is built) | export (every pair,
JSONL) | decontaminate (200 benchmark prompts, 13-grams) | dedup (exact + near at 0.8).
Targets (issue 26): peak RSS <= 6 GB per step; import <= 1.5x the floor; filter count p50 < 300 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ("the a model reward answer helpful careful quick brown fox data pair prompt reply token user assistant "
         "sample policy score margin length safe clear polite wrong right maybe always never river mountain "
         "city garden winter summer music paint number letter window table kitchen street school friend").split()
STEPS = ("import", "scores", "pairs", "filter", "export", "decontaminate", "dedup")


def make_input(path: Path, bench_path: Path, prompts: int, n: int, seed: int = 0) -> None:
    """Prompts of 12-40 random words; replies are slices of one long random word text with
    log-normal lengths around 400 characters (slicing keeps 10M replies to minutes, not hours)."""
    import numpy as np
    import orjson

    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    pool = " ".join(rng.choices(WORDS, k=8_000_000))  # ~50M characters
    chosen_for_bench = set(rng.sample(range(prompts), min(200, prompts)))
    with open(path, "wb") as f, open(bench_path, "wb") as bench:
        for start in range(0, prompts, 10_000):
            block = range(start, min(start + 10_000, prompts))
            lengths = np.maximum(gen.lognormal(math.log(400), 0.6, (len(block), n)).astype(np.int64), 10)
            offsets = gen.integers(0, len(pool) - 20_000, (len(block), n))
            scores = np.round(gen.normal(0, 1, (len(block), n)), 4).tolist()
            lines = []
            for row, i in enumerate(block):
                prompt = f"Question {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(12, 40))) + "?"
                if i in chosen_for_bench:
                    bench.write(orjson.dumps({"question": prompt}) + b"\n")
                responses = [pool[o:o + k].strip() for o, k in zip(offsets[row].tolist(), lengths[row].tolist())]
                lines.append(orjson.dumps({"prompt": prompt, "responses": responses, "scores": scores[row]}))
            f.write(b"\n".join(lines) + b"\n")


# --- the workbench ------------------------------------------------------------------------

def workbench_step(step: str, work: Path, data: Path, bench: Path) -> dict:
    from workbench.store import Store

    store = Store(work / "wb.duckdb", timeout=600)
    if step == "import":
        from workbench.ingest.importer import import_files

        r = import_files(store, [data], fmt="bon", score_name="rm-a", progress=False)
        return {"responses": r.new_responses, "prompts": r.new_prompts}
    if step == "scores":
        return {"scores": _workbench_scores(store)}
    if step == "pairs":
        from workbench.curate.pairs import build_pairs

        return {"pairs": build_pairs(store, "rm-a", "best-vs-worst", progress=False).new_pairs}
    if step == "filter":
        return _workbench_filter(store)
    if step == "export":
        from workbench.exports.export import export_pairs

        return {"rows": export_pairs(store, work / "wb.jsonl").rows}
    if step == "decontaminate":
        from workbench.curate.decontamination import decontaminate

        [report] = decontaminate(store, [bench], progress=False)
        return {"flagged_prompts": report.flagged_prompts}
    from workbench.curate.dedup import find_duplicate_prompts

    report = find_duplicate_prompts(store, near=0.8)
    return {"exact": report.exact, "near": report.near}


def _workbench_scores(store, chunk_size: int = 100_000) -> int:
    """A second reward model's scores for every reply, written as `workbench score` writes them: its
    own work list (`pending_chunks`: what is left, listed once, texts read by row per chunk), then
    insert_new per chunk (the model's forward pass left out; chunks of 100k rather than the command's
    1,024, whose bookkeeping a model's time hides)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from workbench.generate.scoring import pending_chunks
    from workbench.generate.selection import PromptSelection
    from workbench.store import queries

    rm_id = "f" * 32
    with store.connect() as con:
        con.execute("INSERT INTO reward_models VALUES (?, 'rm-b', 1, NULL, '{}', NULL, current_timestamp)", [rm_id])
    written = 0
    for chunk in pending_chunks(store, rm_id, PromptSelection(), None, (0, 1), chunk_size):
        scores = pc.multiply(pc.cast(pc.binary_length(chunk["text"]), pa.float64()), 0.001)
        table = pa.table({"response_id": chunk["response_id"], "rm_id": pa.array([rm_id] * chunk.num_rows),
                          "score": scores, "run_id": pa.array(["bench-scores"] * chunk.num_rows)})
        written += store.write(lambda con: queries.insert_new(con, "scores", table, same={"rm_id": rm_id}))
    return written


def _workbench_filter(store) -> dict:
    """A filter change in the app's Curate tab: the count with its first page (`curation_preview`),
    then the why-dropped waterfall, both from the in-memory index."""
    from workbench.curate.curation import PairIndex, curation_preview
    from workbench.curate.explain import why_dropped
    from workbench.curate.pair_filter import PairFilter

    index = PairIndex(store)
    t = time.perf_counter()
    curation_preview(store, index, PairFilter())
    first = time.perf_counter() - t
    counts, waterfalls = [], []
    filters = [PairFilter(min_margin=m) for m in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)]
    filters += [PairFilter(min_chars=c) for c in (100, 200, 300, 400)]
    for flt in filters:
        t = time.perf_counter()
        curation_preview(store, index, flt)
        counts.append(time.perf_counter() - t)
        t = time.perf_counter()
        why_dropped(store, flt, index)
        waterfalls.append(time.perf_counter() - t)
    assert index.builds == 1, "the index was rebuilt during the filter changes"
    return {"index_build_s": round(first, 2), "p50_ms": round(statistics.median(counts) * 1000, 1),
            "max_ms": round(max(counts) * 1000, 1),
            "waterfall_p50_ms": round(statistics.median(waterfalls) * 1000, 1),
            "waterfall_max_ms": round(max(waterfalls) * 1000, 1)}


# --- the floor: DuckDB alone, no bookkeeping ---------------------------------------------------

def floor_step(step: str, work: Path, data: Path, bench: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(work / "floor.duckdb"))
    con.execute("SET enable_progress_bar = false")  # it prints on stdout, where the step's JSON goes
    if step == "import":
        con.execute(f"""CREATE TABLE prompts AS SELECT row_number() OVER () AS pid, prompt,
                            responses, scores FROM read_json('{data}', format='newline_delimited')""")
        con.execute("""CREATE TABLE responses AS SELECT pid, md5(prompt || z[1]) AS rid, z[1] AS text, z[2] AS score
                       FROM (SELECT pid, prompt, unnest(list_zip(responses, scores)) AS z FROM prompts)""")
        return {"responses": con.execute("SELECT count(*) FROM responses").fetchone()[0]}
    if step == "scores":
        con.execute("CREATE TABLE scores AS SELECT rid, 'rm-b' AS rm, length(text) * 0.001 AS score FROM responses")
        return {"scores": con.execute("SELECT count(*) FROM scores").fetchone()[0]}
    if step == "pairs":
        con.execute("""CREATE TABLE pairs AS SELECT pid, arg_max(rid, score) AS chosen, arg_min(rid, score) AS rejected,
                              max(score) - min(score) AS margin FROM responses GROUP BY pid HAVING max(score) > min(score)""")
        return {"pairs": con.execute("SELECT count(*) FROM pairs").fetchone()[0]}
    if step == "filter":
        con.execute("""CREATE TEMP TABLE idx AS SELECT p.margin, least(length(c.text), length(r.text)) AS chars
                       FROM pairs p JOIN responses c ON c.rid = p.chosen JOIN responses r ON r.rid = p.rejected""")
        times = []
        for sql, values in [("margin >= ?", (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)), ("chars >= ?", (100, 200, 300, 400))]:
            for v in values:
                t = time.perf_counter()
                con.execute(f"SELECT count(*) FROM idx WHERE {sql}", [v]).fetchall()
                times.append(time.perf_counter() - t)
        return {"p50_ms": round(statistics.median(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}
    if step == "export":
        con.execute(f"""COPY (SELECT [{{'role': 'user', 'content': q.prompt}}] AS prompt,
                                   [{{'role': 'assistant', 'content': c.text}}] AS chosen,
                                   [{{'role': 'assistant', 'content': r.text}}] AS rejected
                             FROM pairs p JOIN prompts q USING (pid) JOIN responses c ON c.rid = p.chosen
                             JOIN responses r ON r.rid = p.rejected) TO '{work / "floor.jsonl"}' (FORMAT json)""")
        return {"rows": con.execute("SELECT count(*) FROM pairs").fetchone()[0]}
    words = r"list_filter(regexp_split_to_array(regexp_replace(lower({0}), '[^\pL\pN]+', ' ', 'g'), ' '), lambda w: w <> '')"
    if step == "decontaminate":
        grams = ("list_transform(range(1, len(w) - 12 + 1), lambda i: hash(array_to_string(w[i:i + 12], ' ')))")
        con.execute(f"""CREATE TEMP TABLE b AS SELECT DISTINCT unnest({grams}) AS h
                        FROM (SELECT {words.format('question')} AS w FROM read_json('{bench}'))""")
        found = con.execute(f"""SELECT count(DISTINCT pid) FROM (SELECT pid, unnest({grams}) AS h
                                FROM (SELECT pid, {words.format('prompt')} AS w FROM prompts)) JOIN b USING (h)""")
        return {"flagged_prompts": found.fetchone()[0]}
    dup = con.execute(f"""SELECT count(*) - count(DISTINCT norm) FROM
                          (SELECT array_to_string({words.format('prompt')}, ' ') AS norm FROM prompts)""")
    return {"exact": dup.fetchone()[0], "near": "not computed (the floor is the exact pass)"}


def run_step(impl: str, step: str, work: Path, data: Path, bench: Path) -> dict:
    """Run one step in a child process; its wall time, peak RSS and result."""
    code = (f"import json, sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            f"import store_scale as b; from pathlib import Path; t = time.perf_counter();"
            f"r = b.{impl}_step({step!r}, Path({str(work)!r}), Path({str(data)!r}), Path({str(bench)!r}));"
            f"import resource; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            f"print(json.dumps({{'seconds': time.perf_counter() - t, 'result': r, 'peak_rss_kb': peak}}))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if child.returncode != 0:
        return {"failed": child.stderr.strip().splitlines()[-1:]}
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    measured["peak_rss_gb"] = round(measured.pop("peak_rss_kb") / 2**20, 2)
    measured["seconds"] = round(measured["seconds"], 2)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--workdir", help="Write the files under this folder (default: the system's temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the input, stores and exports afterwards.")
    args = parser.parse_args()
    steps = args.steps.split(",")
    with (contextlib.nullcontext(tempfile.mkdtemp(dir=args.workdir)) if args.keep
          else tempfile.TemporaryDirectory(dir=args.workdir)) as tmp:
        work = Path(tmp)
        data, bench = work / "bon.jsonl", work / "bench.jsonl"
        t = time.perf_counter()
        make_input(data, bench, args.prompts, args.n)
        report = {"prompts": args.prompts, "responses": args.prompts * args.n,
                  "input_gb": round(data.stat().st_size / 2**30, 2), "generate_s": round(time.perf_counter() - t, 1),
                  "steps": {}}
        for step in steps:
            both = {impl: run_step(impl, step, work, data, bench) for impl in ("floor", "workbench")}
            if "seconds" in both["floor"] and "seconds" in both["workbench"]:
                both["ratio_to_floor"] = round(both["workbench"]["seconds"] / max(both["floor"]["seconds"], 1e-3), 2)
            report["steps"][step] = both
            print(json.dumps({step: both}), file=sys.stderr, flush=True)
        peaks = [s["workbench"].get("peak_rss_gb", 0) for s in report["steps"].values()]
        report["max_peak_rss_gb"] = max(peaks) if peaks else None
        report["targets"] = {
            "peak_rss_le_6gb": report["max_peak_rss_gb"] is not None and report["max_peak_rss_gb"] <= 6,
            "import_le_1.5x_floor": report["steps"].get("import", {}).get("ratio_to_floor", math.inf) <= 1.5,
            "filter_p50_lt_300ms": report["steps"].get("filter", {}).get("workbench", {})
                                   .get("result", {}).get("p50_ms", math.inf) < 300}
        if args.keep:
            report["kept_in"] = str(work)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
