"""`workbench sample`: N responses per selected prompt from a local policy, stored as they come.

A generation run is identified by the policy's content hash, N, the sampling parameters and the
prompt selection, so running the same command again continues the same run: it generates only
the (prompt, sample index) pairs the store lacks. Each batch is committed on its own, so a crash
or SIGKILL loses at most the batch in flight, and the store ends with exactly prompts x N rows.
Each sample has its own seed (from the run seed, prompt id and sample index), so a resumed run
makes the same samples an uninterrupted one would.

Curation flags (near-duplicates among a prompt's N samples, truncation, repetition loops) are
computed once a prompt's samples are complete, at the end of the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import pyarrow as pa
from tqdm.auto import tqdm

from engine.data import Sample, SamplingParams
from workbench import ids
from workbench.errors import WorkbenchError
from workbench.store.runs import recorded_run
from workbench.generate.selection import PromptSelection
from workbench.store import Store, queries


@dataclass
class SampleResult:
    run_id: str
    prompts: int
    n: int
    generated: int
    existing: int
    total: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def generation_config(path, fingerprint: str, n: int, params: SamplingParams, selection: PromptSelection,
                      backend: str) -> dict:
    return {"policy": {"path": str(path), "fingerprint": fingerprint, "backend": backend},
            "n": n, "params": asdict(params), "selection": selection.as_dict()}


def sample_responses(store: Store, policy_spec: str, n: int, *, params: SamplingParams | None = None,
                     selection: PromptSelection | None = None, batch_size: int = 64, backend: str = "torch",
                     policy=None, progress: bool = True) -> SampleResult:
    """Generate the missing samples of this run and store them; returns counts."""
    from engine.backbone import model_fingerprint, resolve_model_path
    from engine.generation import load_policy

    params = params or SamplingParams()
    selection = selection or PromptSelection()
    if n < 1:
        raise WorkbenchError("--n must be at least 1")
    with store.connect() as con:
        prompts = queries.select_prompts(con, selection.as_dict())
    if not prompts:
        raise WorkbenchError("no prompts match the selection: import some with `workbench import --format prompts`")
    from workbench.dpo.policies import policy_path

    path = policy.path if policy is not None else resolve_model_path(policy_path(store, policy_spec))
    config = generation_config(path, model_fingerprint(path), n, params, selection, backend)
    run_id = ids.run_id("generation", {k: v for k, v in config.items() if k != "policy"}
                        | {"policy": config["policy"]["fingerprint"]})
    with recorded_run(store, run_id, "generation", config | {"policy_spec": str(policy_spec)}) as run:
        with store.connect() as con:
            done = set(queries.generated_samples(con, run_id))
        index = {pid: i for i, (pid, _) in enumerate(prompts)}
        missing = [(index[pid], s) for pid, _ in prompts for s in range(n) if (pid, s) not in done]
        started = time.perf_counter()
        if missing:
            policy = policy or load_policy(path, backend=backend)  # loaded only when there is work
            _generate(store, run_id, policy, prompts, n, params, missing, batch_size, progress)
        _flag_run(store, run_id)
        result = SampleResult(run_id, len(prompts), n, len(missing), n * len(prompts) - len(missing),
                              n * len(prompts), round(time.perf_counter() - started, 2))
        run.summary = result.as_dict()
    return result


def _generate(store: Store, run_id: str, policy, prompts: list[tuple[str, str]], n: int, params: SamplingParams,
              missing: list[tuple[int, int]], batch_size: int, progress: bool) -> None:
    """Generate the missing (prompt, sample) pairs, committing each chunk as it comes."""
    messages = [json.loads(m) for _, m in prompts]
    keys = [pid for pid, _ in prompts]
    with tqdm(total=len(prompts) * n, initial=len(prompts) * n - len(missing), unit=" samples", desc="sampling",
              disable=not progress, smoothing=0.1) as bar:
        for chunk in policy.generate(messages, n, params, prompt_keys=keys, only=missing, batch_size=batch_size,
                                     progress=bar.update):
            table = _response_rows(run_id, [keys[s.prompt_index] for s in chunk], chunk)
            store.write(lambda con, t=table: queries.insert_new(con, "responses", t))


def _response_rows(run_id: str, prompt_ids: list[str], samples: list[Sample]) -> pa.Table:
    return pa.table({
        "response_id": pa.array([ids.generated_response_id(run_id, p, s.sample_index)
                                 for p, s in zip(prompt_ids, samples)], pa.string()),
        "prompt_id": pa.array(prompt_ids, pa.string()),
        "text": pa.array([s.text for s in samples], pa.string()),
        "origin": pa.array(["generated"] * len(samples), pa.string()),
        "run_id": pa.array([run_id] * len(samples), pa.string()),
        "sample_index": pa.array([s.sample_index for s in samples], pa.int32()),
        "n_chars": pa.array([len(s.text) for s in samples], pa.int32()),
        "n_tokens": pa.array([s.n_tokens for s in samples], pa.int32()),
        "finish_reason": pa.array([s.finish_reason for s in samples], pa.string()),
        "seed": pa.array([s.seed for s in samples], pa.int64()),
        "gen_time_s": pa.array([s.time_s for s in samples], pa.float64()),
    })


def _flag_run(store: Store, run_id: str) -> None:
    """Near-duplicate, truncation and repetition flags for every sample of the run."""
    from engine.signals import flag_samples

    with store.connect() as con:
        table = queries.run_samples(con, run_id)
    columns = table.to_pydict()
    by_prompt: dict[str, list[int]] = {}
    for row, pid in enumerate(columns["prompt_id"]):
        by_prompt.setdefault(pid, []).append(row)
    response_ids, duplicate_of, truncated, looping = [], [], [], []
    for rows in by_prompt.values():
        samples = [Sample(0, columns["sample_index"][r], columns["text"][r], 0, columns["finish_reason"][r] or "", 0)
                   for r in rows]
        by_index = {columns["sample_index"][r]: columns["response_id"][r] for r in rows}
        for flags in flag_samples(samples):
            response_ids.append(by_index[flags.sample_index])
            duplicate_of.append(None if flags.duplicate_of is None else by_index[flags.duplicate_of])
            truncated.append(flags.truncated)
            looping.append(flags.looping)
    flags = pa.table({"response_id": pa.array(response_ids, pa.string()),
                      "near_duplicate_of": pa.array(duplicate_of, pa.string()),
                      "truncated": pa.array(truncated, pa.bool_()), "repetition": pa.array(looping, pa.bool_())})
    store.write(lambda con: queries.set_response_flags(con, flags))
