"""Benchmark: the reward server's dynamic batching vs. the same server scoring each request alone.

32 concurrent clients send a fixed number of requests to `workbench serve` on 127.0.0.1, each
request one rollout in OpenRLHF's shape (`{"query": [full text], "prompts": [...], "labels": [...]}`,
one query per request as OpenRLHF's single-turn executor posts them). The reward model is
SmolLM2-135M-Instruct with a reward token and an untrained value head (scoring speed does not
depend on training). The server runs twice as a separate process on the same model and
requests: batched (`--max-wait-ms`, the default packing) and alone (`--max-batch-requests 1`).
Reported: throughput ratio (target >= 4x), p50/p99 latency, failed or lost requests (target 0),
and how far the two runs' scores differ (packed rows change float rounding only). Prints JSON.

    flock /tmp/heavy.lock python bench/serving.py                 # 192 requests, hh-rlhf texts
    flock /tmp/heavy.lock python bench/serving.py --requests 64 --synthetic   # short texts
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-1800.jsonl"
sys.path.insert(0, str(ROOT))


def conversations(n: int, seed: int, synthetic: bool = False) -> list[tuple[list[dict], str]]:
    """(prompt, reply) pairs from hh-rlhf when the file is here, else short synthetic ones."""
    rng = random.Random(seed)
    if HH.exists() and not synthetic:
        from workbench.models.training import pairs_from_files

        pairs = pairs_from_files([HH], skip_invalid=True, progress=False)
        picked = rng.sample(pairs, n)
        return [(p.prompt, p.chosen if rng.random() < 0.5 else p.rejected) for p in picked]
    words = "the a reward model scores replies to prompts about cats dogs owls weather code".split()
    return [([{"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(10, 60)))}],
             " ".join(rng.choices(words, k=rng.randint(10, 80)))) for _ in range(n)]


def start_server(db: Path, rm: str, port: int, extra: list[str], precision: str, max_length: int):
    args = [sys.executable, "-m", "workbench", "--db", str(db), "-q", "serve", "--rm", rm, "--port", str(port),
            "--precision", precision, "--max-length", str(max_length), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(url: str, child, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited: {child.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


def drive(url: str, bodies: list[dict], clients: int) -> dict:
    """`clients` threads take the requests in turn; returns latencies, failures and scores by request."""
    import httpx

    scores: list[float | None] = [None] * len(bodies)
    latencies: list[float] = []
    failures: list[str] = []
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    answer = http.post(f"{url}/get_reward", json=bodies[i])
                    answer.raise_for_status()
                    value = answer.json()["rewards"][0]
                except Exception as error:  # counted, reported
                    with lock:
                        failures.append(f"{i}: {error}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)
                    scores[i] = value

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    return {"seconds": round(seconds, 2), "requests_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1) if latencies else None,
            "failed": len(failures), "lost": sum(s is None for s in scores) - len(failures),
            "errors": failures[:3], "scores": scores}


def batches_run(url: str) -> int:
    import httpx

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    return int(next(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("workbench_rm_batches_total")))


def run_mode(db: Path, rm: str, extra: list[str], bodies: list[dict], args) -> dict:
    from tests.processes import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = start_server(db, rm, port, extra, args.precision, args.max_length)
    try:
        wait_healthy(url, child)
        drive(url, bodies[:args.clients], args.clients)  # warm-up: first forward passes, allocator
        before = batches_run(url)
        result = drive(url, bodies, args.clients)
        result["batches"] = batches_run(url) - before
    finally:
        child.terminate()
        child.wait(60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", action="store_true",
                        help="Short synthetic conversations (about 30-150 tokens) instead of hh-rlhf's.")
    args = parser.parse_args()

    from engine.backbone import resolve_model_path
    from engine.reward_model import RewardModel
    from workbench.models.reward_models import register_reward_model
    from workbench.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = RewardModel.from_base(resolve_model_path("smollm2", progress=False))
        tokenizer = model.tokenizer
        rm_dir = model.save(tmp / "smollm2-rm")
        del model
        store = Store(tmp / "bench.duckdb")
        register_reward_model(store, rm_dir, name="smollm2-rm")
        bodies = []
        for prompt, reply in conversations(args.requests, args.seed, args.synthetic):
            prefix = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            bodies.append({"query": [prefix + reply + tokenizer.eos_token], "prompts": [prefix], "labels": [""]})
        batched = run_mode(tmp / "bench.duckdb", "smollm2-rm", ["--max-wait-ms", str(args.max_wait_ms)], bodies, args)
        alone = run_mode(tmp / "bench.duckdb", "smollm2-rm", ["--max-batch-requests", "1", "--max-wait-ms", "0"],
                         bodies, args)
    pairs = [(a, b) for a, b in zip(batched.pop("scores"), alone.pop("scores")) if a is not None and b is not None]
    report = {
        "requests": args.requests, "clients": args.clients, "texts": "synthetic" if args.synthetic or not HH.exists()
        else "hh-rlhf", "max_wait_ms": args.max_wait_ms,
        "max_length": args.max_length, "precision": args.precision, "model": "SmolLM2-135M-Instruct + untrained head",
        "batched": batched, "alone": alone,
        "throughput_ratio": round(batched["requests_per_s"] / alone["requests_per_s"], 2) if alone["requests_per_s"] else None,
        "target_ratio": 4.0,
        "scores_compared": len(pairs),
        "max_abs_score_diff": max((abs(a - b) for a, b in pairs), default=None),
        "cpu_threads": __import__("torch").get_num_threads(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
