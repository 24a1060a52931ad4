"""`workbench decontaminate`: flag stored prompts (and, on request, replies) that contain a
benchmark's prompts, so no DPO export carries the test set of a later evaluation.

A match is a shared word n-gram (13 words by default, as GPT-3's and most later decontamination
reports use) after normalisation: accents stripped, lower case, punctuation and white space as word
breaks. So a re-cased or re-punctuated copy matches, and so does a benchmark prompt embedded in a
longer prompt; a paraphrase rarely keeps 13 words in a row and does not. A benchmark prompt shorter
than n words matches only a stored text that is the same words. `near` adds a second pass for
prompts the first missed: those holding at least that share of the benchmark prompt's 5-grams.

Benchmark files are read like imports (JSON Lines, JSON, Parquet, `datasets` directories; any import
format, or rows with a `prompt`, `question` or `instruction` string); nothing is shipped. Flags live in
the `contamination` table (one row per flagged prompt or reply and benchmark, with the matching span
and the benchmark's line); `PairFilter.exclude_contaminated` drops pairs that touch one. A rerun for a
benchmark replaces that benchmark's flags.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from workbench import ids
from workbench.errors import InputError, WorkbenchError
from workbench.ingest.formats import detect_format, parse_record
from workbench.ingest.readers import iter_records
from workbench.store.runs import record_completed_run
from workbench.store import Store, queries

DEFAULT_NGRAM = 13
NEAR_NGRAM = 5
_PLAIN_KEYS = ("prompt", "question", "instruction")


@dataclass
class BenchmarkReport:
    benchmark: str
    path: str
    benchmark_prompts: int
    flagged_prompts: int
    near_prompts: int
    flagged_replies: int
    run_id: str
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def read_benchmark(path: str | Path) -> pa.Table:
    """The benchmark's prompts as (line, text): every message's content of each record's prompt.
    A record that has no prompt is refused, naming its file and line."""
    lines, texts = [], []
    for record in iter_records(path):
        if isinstance(record, InputError):
            raise record
        text = _prompt_text(record.value)
        if text is None:
            raise InputError("no prompt: expected a record of an import format or a 'prompt', 'question' "
                             "or 'instruction' string", file=record.file, line=record.line, unit=record.unit)
        lines.append(record.line)
        texts.append(text)
    if not texts:
        raise WorkbenchError(f"{path}: no benchmark prompts in it")
    return pa.table({"line": pa.array(lines, pa.int32()), "text": pa.array(texts, pa.string())})


def _prompt_text(value) -> str | None:
    if isinstance(value, dict):
        for key in _PLAIN_KEYS:
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key]
    fmt = detect_format(value)
    if fmt is None:
        return None
    return " ".join(m["content"] for m in parse_record(value, fmt).prompt)


def decontaminate(store: Store, against: list[str | Path], *, names: list[str] | None = None,
                  ngram: int = DEFAULT_NGRAM, replies: bool = False, near: float | None = None,
                  progress: bool = True) -> list[BenchmarkReport]:
    """Flag the store's prompts (and replies, with `replies`) that share an n-gram with each benchmark;
    one recorded run per benchmark, its earlier flags replaced. Every file is read before anything is
    written, so a bad benchmark file leaves the store unchanged."""
    if ngram < 1:
        raise WorkbenchError("--ngram must be >= 1")
    if near is not None and not 0 < near <= 1:
        raise WorkbenchError("--near must be a share in (0, 1], e.g. 0.5")
    names = list(names or [])
    if names and len(names) != len(against):
        raise WorkbenchError(f"give one --name per --against ({len(against)}), or none")
    benchmarks = [(names[i] if names else _default_name(path), Path(path), read_benchmark(path))
                  for i, path in enumerate(against)]
    duplicate = {name for name, _, _ in benchmarks if [b[0] for b in benchmarks].count(name) > 1}
    if duplicate:
        raise WorkbenchError(f"two benchmarks are named {sorted(duplicate)[0]!r}: name them with --name")
    return [_flag_one(store, name, path, table, ngram, replies, near, progress) for name, path, table in benchmarks]


def _default_name(path: str | Path) -> str:
    path = Path(path)
    return path.name if path.is_dir() else path.name.split(".")[0]


def _flag_one(store: Store, name: str, path: Path, table: pa.Table, ngram: int, replies: bool,
              near: float | None, progress: bool) -> BenchmarkReport:
    content = hashlib.sha256("\n".join(table["text"].to_pylist()).encode()).hexdigest()
    config = {"benchmark": name, "path": str(path.resolve()), "content_sha256": content, "ngram": ngram,
              "replies": replies, "near": near, "near_ngram": NEAR_NGRAM if near else None}
    run_id = ids.run_id("decontamination", config)
    if progress:
        print(f"decontaminate: {name} ({table.num_rows} prompts, {ngram}-grams)...", flush=True)

    def write(con) -> BenchmarkReport:
        prompts = queries.load_benchmark(con, table, ngram)
        queries.stage_matches(con, ngram, replies)
        if near is not None:
            queries.load_benchmark(con, table, NEAR_NGRAM)
            queries.stage_near_matches(con, NEAR_NGRAM, near)
        counts = queries.replace_contamination(con, name, run_id)
        record_completed_run(con, run_id, "decontamination", config, counts | {"benchmark_prompts": prompts})
        return BenchmarkReport(name, str(path), prompts, counts["flagged_prompts"], counts["near_prompts"],
                               counts["flagged_replies"], run_id, queries.contamination_examples(con, name))

    return store.write(write)
