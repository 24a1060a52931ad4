"""Benchmark: a filter change in the app's Curate tab at a million responses.

Builds a store of 125,000 prompts x 8 scored responses (bench/store_pipeline.make_input, imported
with workbench.ingest.importer, best-vs-worst pairs), then times what one filter change costs the server:
the updated count and the first table page (`workbench.curate.curation.curation_preview`, the function the
callback calls). Baseline, same run: the same numbers through the export query
(`workbench.exports.export.count_pairs` plus the first 20 export rows). Also times the why-dropped
waterfall the tab draws after the count (`workbench.curate.explain.why_dropped` on the in-memory index, as
the tab calls it; the manifest's own query on the store for comparison, with equal numbers required),
Browse pages and, through HTTP with a running app, the whole
round trip. Prints one JSON object.

    python bench/ui_filters.py                        # builds the store in a temporary directory
    python bench/ui_filters.py --store big.duckdb     # reuse (or build once into) this file
    python bench/ui_filters.py --prompts 20000        # a quicker look

Target (the app issue): p50 and max of a filter change under 300 ms of server time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_pipeline import make_input  # noqa: E402

from workbench.curate.curation import PairIndex, curation_preview
from workbench.curate.explain import why_dropped  # noqa: E402
from workbench.curate.pair_filter import PairFilter  # noqa: E402
from workbench.exports.export import count_pairs  # noqa: E402
from workbench.store import Store, queries  # noqa: E402



def filters(rm: str) -> list[PairFilter]:
    """Filter changes a person might make, one after another."""
    return [
        PairFilter(min_margin=0.5), PairFilter(min_margin=1.0), PairFilter(min_margin=2.0),
        PairFilter(min_chars=50), PairFilter(min_chars=50, max_chars=200), PairFilter(max_chars=120),
        PairFilter(rm=rm, min_margin=1.5), PairFilter(label="rm", exclude_flagged=True),
        PairFilter(strategy="best-vs-worst", min_margin=3.0), PairFilter(source="bon"),
        PairFilter(min_score=-1.0, max_score=1.0), PairFilter(tag="none-such"), PairFilter(),
    ]


def build(path: Path, prompts: int, n: int) -> None:
    from workbench.ingest.importer import import_files
    from workbench.curate.pairs import build_pairs

    data = path.with_suffix(".jsonl")
    make_input(data, prompts, n)
    store = Store(path)
    import_files(store, [data], fmt="bon", source="bon", score_name="bench-rm", progress=False)
    build_pairs(store, "bench-rm", "best-vs-worst", progress=False)
    data.unlink()


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000, result


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1),
            "min_ms": round(min(ms), 1)}


def baseline_preview(store: Store, flt: PairFilter) -> int:
    """The obvious way: count and first page through the export query itself."""
    from workbench.exports.export import query_values

    total = count_pairs(store, flt)
    with store.connect() as con:
        reader = queries.export_reader(con, query_values(store, flt), ["conversational", "provenance"], 20)
        reader.read_all()
    return total


def http_roundtrips(store: Store, rounds: int) -> dict:
    from gradio_client import Client

    from ui.app import close_app, launch

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, url = launch(store, port=port, block=False, quiet=True)
    try:
        client = Client(url, verbose=False)
        ms = []
        for i in range(rounds):
            margin = str([0.5, 1.0, 2.0, 3.0][i % 4])
            filters = ["(any)", "(any)", "(any)", "(any)", margin, "", "", "", "", False]
            ms.append(timed(client.predict, *filters, api_name="/curate_preview")[0])
        return summary(ms[1:])  # the first call pays for the index
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # Gradio's goodbye line would break the JSON
            close_app(demo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=125_000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--store", type=Path, help="store file to reuse (built there if missing)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the filter list")
    parser.add_argument("--no-http", action="store_true", help="skip the round trips through a running app")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "bench.duckdb"
        build_s = None
        if not path.exists():
            build_s = timed(build, path, args.prompts, args.n)[0] / 1000
        store = Store(path)
        with store.connect() as con:
            counts = queries.table_counts(con)
            rm = queries.list_reward_models(con)[0].name
        report = {"responses": counts["responses"], "prompts": counts["prompts"], "pairs": counts["pairs"],
                  "build_s": None if build_s is None else round(build_s, 1)}

        index = PairIndex(store)
        cold_ms, _ = timed(curation_preview, store, index, PairFilter())
        workbench_ms, baseline_ms, waterfall_ms, store_waterfall_ms = [], [], [], []
        mismatches = waterfall_mismatches = 0
        for _ in range(args.rounds):
            for flt in filters(rm):
                ms, preview = timed(curation_preview, store, index, flt)
                workbench_ms.append(ms)
                ms, total = timed(baseline_preview, store, flt)
                baseline_ms.append(ms)
                if total != preview.total:
                    mismatches += 1
                ms, waterfall = timed(why_dropped, store, flt, index)
                waterfall_ms.append(ms)
                ms, on_store = timed(why_dropped, store, flt)
                store_waterfall_ms.append(ms)
                if waterfall["kept"] != preview.total or waterfall != on_store:
                    waterfall_mismatches += 1
        report["filter_change"] = {
            "workbench": summary(workbench_ms), "baseline_export_query": summary(baseline_ms),
            "speedup_p50": round(statistics.median(baseline_ms) / statistics.median(workbench_ms), 1),
            "first_call_with_index_build_ms": round(cold_ms, 1), "count_mismatches": mismatches,
            "under_300ms": max(workbench_ms) < 300,
        }
        report["why_dropped_waterfall"] = {"index": summary(waterfall_ms), "store": summary(store_waterfall_ms),
                                           "differs_from_count_or_store": waterfall_mismatches}

        from workbench.curate.browse import PromptQuery, prompt_detail, prompt_page

        browse_ms, detail_ms = [], []
        for query in (PromptQuery(), PromptQuery(search="fox"), PromptQuery(sort="text", page=400),
                      PromptQuery(sort="most responses"), PromptQuery(search="question 12", sort="source", page=3)):
            ms, page = timed(prompt_page, store, query)
            browse_ms.append(ms)
            if len(page.rows):
                detail_ms.append(timed(prompt_detail, store, page.rows["prompt_id"][0])[0])
        report["browse"] = {"page": summary(browse_ms), "prompt_detail": summary(detail_ms)}
        if not args.no_http:
            report["http_round_trip_filter_change"] = http_roundtrips(store, 9)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
