"""Sampling through an inference server: 16 requests in flight vs one at a time, and vs in-process torch.

Starts `transformers serve MODEL --continuous-batching` on a free loopback port, then samples the
same prompts with the same settings three ways, each into its own fresh store through the real
commands' library functions, and prints JSON:

- `endpoint_concurrent`: `sample_from_endpoints` with --concurrency 16;
- `endpoint_sequential`: the same with --concurrency 1 (the baseline for the speed-up);
- `in_process_torch`: `workbench.generate.sampling.sample_responses` (engine/generation.py's batched decode).

Tokens/s counts the completion tokens each way stored (the server's `usage`, the engine's counts),
over the wall time of the call. The concurrent side is timed before and after the sequential one and
averaged, so load from other processes hits both alike; the load average is printed too.

    python bench/endpoint_sampling.py                       # SmolLM2, ~3-5 minutes on 2 cores
    python bench/endpoint_sampling.py --prompts 8 --max-new-tokens 32 --out result.json
    python bench/endpoint_sampling.py --url http://127.0.0.1:8000   # a server already running --model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import SamplingParams  # noqa: E402

PROMPTS = [
    "What is the capital of France?", "Give me two tips for sleeping better.", "Write a haiku about the sea.",
    "Explain what a list is in Python.", "How do I boil an egg?", "Name three primary colours.",
    "Why is the sky blue?", "Suggest a name for a cat.", "What is 12 times 7?", "Describe a rainy day.",
    "How do plants make food?", "Give me a synonym for happy.", "What does a compiler do?",
    "Write one sentence about autumn.", "How far is the Moon?", "What is a prime number?",
    "Tell me a fun fact about owls.", "How do I make tea?", "What is the boiling point of water?",
    "Recommend a short book.", "Explain gravity to a child.", "What is a noun?", "Why do we sleep?",
    "How do bees make honey?", "What is an API?", "Give me a tip for learning to code.",
    "What is photosynthesis?", "Name a famous painter.", "How do magnets work?", "What is a haiku?",
    "Describe the taste of lemon.", "What is the largest ocean?",
]


def fresh_store(directory: Path, name: str, count: int):
    from workbench.ingest.importer import import_files
    from workbench.store import Store

    store = Store(directory / f"{name}.duckdb", timeout=60)
    prompts = directory / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:count]))
    import_files(store, [prompts], fmt="prompts", source="bench", progress=False)
    return store


def endpoint_run(directory, name, url, model, n, params, concurrency, count) -> dict:
    from workbench.endpoints.sampling import ServedModel, sample_from_endpoints

    store = fresh_store(directory, name, count)
    started = time.perf_counter()
    result = sample_from_endpoints(store, ServedModel([url], model, concurrency=concurrency), n, params=params,
                                   progress=False)
    seconds = time.perf_counter() - started
    tokens = result.usage["completion_tokens"]
    return {"concurrency": concurrency, "samples": result.total, "completion_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2),
            "requests": result.usage["requests"], "short_answers": result.usage["short_answers"]}


def torch_run(directory, model, n, params, count, batch_size) -> dict:
    from workbench.generate.sampling import sample_responses
    from workbench.store import queries

    store = fresh_store(directory, "torch", count)
    started = time.perf_counter()
    result = sample_responses(store, str(model), n, params=params, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    with store.connect() as con:
        tokens = queries.fetch_value(con, "SELECT sum(n_tokens) FROM responses WHERE run_id = ?", [result.run_id])
    return {"batch_size": batch_size, "samples": result.total, "completion_tokens": int(tokens),
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2),
            "note": "includes loading the model (a few seconds)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="A model directory, or smollm2.")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-continuous-batching", action="store_true")
    parser.add_argument("--url", help="Use this running server (serving --model) instead of starting one.")
    parser.add_argument("--skip-torch", action="store_true", help="Leave out the in-process torch run.")
    parser.add_argument("--out", help="Also write the JSON here.")
    args = parser.parse_args()

    from engine.backbone import resolve_model_path
    from tests.endpoints.servers import kill, transformers_serve, wait_until_ready

    model = resolve_model_path(args.model)
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    count = min(args.prompts, len(PROMPTS))
    with tempfile.TemporaryDirectory(prefix="endpoint-bench-") as tmp:
        directory = Path(tmp)
        log = directory / "serve.log"
        process, url = (None, args.url) if args.url else \
            transformers_serve(model, log, continuous_batching=not args.no_continuous_batching)
        try:
            started = time.perf_counter()
            if process is not None:
                wait_until_ready(process, url, log)
            startup = time.perf_counter() - started
            endpoint_run(directory, "warmup", url, str(model), 1, params, 4, 2)  # first requests load kernels
            before = endpoint_run(directory, "concurrent-1", url, str(model), args.n, params, args.concurrency, count)
            sequential = endpoint_run(directory, "sequential", url, str(model), args.n, params, 1, count)
            after = endpoint_run(directory, "concurrent-2", url, str(model), args.n, params, args.concurrency, count)
        except BaseException:
            if process is not None:  # why the server went away, before its log goes with the directory
                print(f"server exit code {process.poll()}; log tail:\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            if process is not None:
                kill(process)
        concurrent_tps = (before["tokens_per_s"] + after["tokens_per_s"]) / 2
        torch_side = None if args.skip_torch else torch_run(directory, model, args.n, params, count, 64)
    report = {
        "model": str(model), "prompts": count, "n": args.n, "params": vars(params),
        "server": {"kind": "transformers serve", "url_given": bool(args.url),
                   "continuous_batching": None if args.url else not args.no_continuous_batching,
                   "startup_s": None if args.url else round(startup, 1)},
        "endpoint_concurrent": {"runs": [before, after], "tokens_per_s": round(concurrent_tps, 2)},
        "endpoint_sequential": sequential,
        "speedup_concurrent_vs_sequential": round(concurrent_tps / sequential["tokens_per_s"], 2),
        "in_process_torch": torch_side,
        "endpoint_concurrent_vs_torch": round(concurrent_tps / torch_side["tokens_per_s"], 2) if torch_side else None,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
