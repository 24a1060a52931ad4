"""`workbench dedup`: prompts that repeat an earlier one, across sources and rounds.

Exact duplicates have the same words after the decontamination normalisation (case, accents and
punctuation ignored); near duplicates (`near`, a Jaccard threshold on word 3-grams) are found by
MinHash-LSH in DuckDB and verified exactly (`workbench.store.queries.duplicates`). Each flag names
the earliest stored prompt it repeats. A rerun replaces the flags, so they follow the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from workbench import ids
from workbench.errors import WorkbenchError
from workbench.store.runs import record_completed_run
from workbench.store import Store, queries

BANDS, ROWS = 16, 4


@dataclass
class DedupReport:
    prompts: int
    exact: int
    near: int
    run_id: str
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def find_duplicate_prompts(store: Store, near: float | None = 0.8) -> DedupReport:
    """Flag every stored prompt that repeats an earlier one (exactly, or with `near` similarity)."""
    if near is not None and not 0 < near <= 1:
        raise WorkbenchError("--near must be a Jaccard similarity in (0, 1], e.g. 0.8")

    def write(con) -> DedupReport:
        fingerprint = queries.store_fingerprint_rows(con)
        config = {"near": near, "bands": BANDS, "rows": ROWS, "shingle_words": queries.SHINGLE_WORDS}
        run_id = ids.run_id("dedup", {**config, "store": fingerprint})
        queries.stage_prompt_shingles(con)
        queries.stage_exact_duplicates(con)
        if near is not None:
            queries.stage_near_duplicates(con, near, BANDS, ROWS)
        counts = queries.replace_prompt_duplicates(con, run_id)
        record_completed_run(con, run_id, "dedup", config, counts)
        return DedupReport(counts["prompts"], counts["exact"], counts["near"], run_id, queries.duplicate_examples(con))

    return store.write(write)
