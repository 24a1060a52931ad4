"""Build chosen/rejected pairs from the scored responses of each prompt.

Strategies (per prompt, over the responses a reward model has scored; identical texts count once):
- `best-vs-worst`: the highest against the lowest score.
- `best-vs-random`: the highest against one reply drawn (seeded) among those the margin allows.
- `top-k`: each of the k highest against each of the k lowest.
- `all-above-margin`: every ordered pair whose score difference reaches the margin.

Tie rules: a pair needs a strictly positive margin of at least `--min-margin`, so prompts whose
replies all tie give no pair, and chosen is never the same text as rejected. Among replies tied
for best, the shorter is chosen; among replies tied for worst, the longer is rejected (both work
against length bias); remaining ties break by response id, so results are deterministic.
`--max-length-ratio R` keeps a pair only if its longer reply has at most R times the tokens of the
shorter; missing token counts are computed first with the reference tokenizer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from workbench import ids
from workbench.errors import WorkbenchError
from workbench.models.reward_models import resolve_reward_model
from workbench.store.runs import record_completed_run
from workbench.store import Store, queries

STRATEGIES = ("best-vs-worst", "best-vs-random", "top-k", "all-above-margin")


@dataclass
class PairBuildResult:
    run_id: str
    rm: str
    strategy: str
    params: dict
    candidates: int
    new_pairs: int

    def as_dict(self) -> dict:
        return asdict(self)


def build_pairs(store: Store, rm: str, strategy: str, *, k: int | None = None, min_margin: float = 0.0,
                max_length_ratio: float | None = None, seed: int = 0, source: str | None = None,
                generation_run: str | None = None, progress: bool = True) -> PairBuildResult:
    """Pair each prompt's responses scored by the reward model by one strategy and store the new
    pairs (a recorded 'pairs' run)."""
    params = strategy_params(strategy, k, min_margin, max_length_ratio, seed, source, generation_run)
    model = resolve_reward_model(store, rm)
    spec = ids.canonical_json(params)
    run_id = ids.run_id("pairs", {"rm_id": model.rm_id, **params})

    if max_length_ratio is not None:
        ensure_token_counts(store, model.rm_id, source, generation_run, progress)

    config = {"rm": model.as_reference(), **params}
    result = PairBuildResult(run_id, model.label, strategy, params, 0, 0)

    def write(con) -> None:
        result.candidates, result.new_pairs = queries.insert_pairs(
            con, strategy, {"rm_id": model.rm_id, **params}, spec=spec, run_id=run_id)
        summary = {"candidates": result.candidates, "new_pairs": result.new_pairs}
        record_completed_run(con, run_id, "pairs", config, summary)

    store.write(write)
    return result


def strategy_params(strategy: str, k: int | None, min_margin: float, max_length_ratio: float | None, seed: int,
                    source: str | None, generation_run: str | None) -> dict:
    """The checked parameters of a pair build, as recorded with every pair it makes."""
    if strategy not in STRATEGIES:
        raise WorkbenchError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    if strategy == "top-k" and (k is None or k < 1):
        raise WorkbenchError("top-k needs --k, a positive number of replies from each end")
    if min_margin < 0:
        raise WorkbenchError("--min-margin must be >= 0")
    if max_length_ratio is not None and max_length_ratio < 1:
        raise WorkbenchError("--max-length-ratio must be >= 1 (1 keeps only equal lengths)")
    params = {"strategy": strategy, "min_margin": float(min_margin), "max_length_ratio": max_length_ratio,
              "source": source, "run": generation_run}
    if strategy == "top-k":
        params["k"] = int(k)
    if strategy == "best-vs-random":
        params["seed"] = int(seed)
    return params


def ensure_token_counts(store: Store, rm_id: str, source: str | None, run: str | None, progress: bool) -> int:
    """Count tokens (reference tokenizer) for candidate responses that have no count yet."""
    from engine.tokens import REFERENCE_TOKENIZER, count_tokens

    import pyarrow as pa  # here: the CLI reads STRATEGIES without loading pyarrow (it starts at once)
    from tqdm.auto import tqdm

    with store.connect() as con:
        missing = queries.responses_missing_tokens(con, rm_id, source, run)
    if not missing.num_rows:
        return 0
    bar = tqdm(total=missing.num_rows, desc=f"counting tokens ({REFERENCE_TOKENIZER})", disable=not progress)
    counts = count_tokens(missing["text"].to_pylist(), progress=bar.update)
    bar.close()
    table = pa.table({"response_id": missing["response_id"], "n_tokens": pa.array(counts, pa.int32())})
    return store.write(lambda con: queries.set_token_counts(con, table))
