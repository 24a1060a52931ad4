"""`workbench import`: validate whole files first, then write them in one transaction.

Nothing touches the store until every record has been read and checked, and everything is
written in a single DuckDB transaction: an invalid file (without --skip-invalid), a crash or a
SIGKILL leave the store exactly as it was, and rerunning completes the import. Ids are content
hashes, so importing the same file again adds nothing.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
from tqdm.auto import tqdm

from workbench import ids
from workbench.ingest import bulk_import
from workbench.errors import InputError, WorkbenchError, check_name_is_text
from workbench.ingest.formats import FORMATS, ParsedRecord, detect_format, parse_record
from workbench.store.provenance import environment
from workbench.ingest.readers import DEFAULT_MAX_RECORD_BYTES, RawRecord, ReadingStopped, check_input_path, iter_records
from workbench.store import Store, queries

HUMAN = "human"
MAX_ERRORS_SHOWN = 10


@dataclass
class ImportResult:
    run_id: str
    files: list[str]
    formats: dict[str, str]
    records: int = 0
    valid: int = 0
    rejected: int = 0
    new_prompts: int = 0
    new_responses: int = 0
    new_pairs: int = 0
    new_scores: int = 0
    already_imported: bool = False
    rejects_path: str | None = None
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Located:
    file: str
    line: int
    record: ParsedRecord


def import_files(
    store: Store,
    paths: Iterable[str | Path],
    *,
    fmt: str = "auto",
    source: str | None = None,
    tags: Iterable[str] = (),
    skip_invalid: bool = False,
    rejects_path: str | Path | None = None,
    score_name: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    progress: bool = True,
    bulk: bool = True,
) -> ImportResult:
    """Import preference data, Best-of-N samples or prompts; see `workbench.ingest.formats`.

    `bulk=False` skips the bulk lane (`workbench.ingest.bulk_import`), which otherwise takes the imports
    it can; both lanes store the same rows.
    """
    paths = [Path(p) for p in paths]
    _check_arguments(paths, fmt, source, score_name, tags)
    source = source or _default_source(paths[0])
    tags = sorted(set(tags))
    scanned = [bulk_import.scan(p, fmt, max_record_bytes) for p in paths]
    config = {
        "files": [{"name": f.path.name, "sha256": f.sha256} for f in scanned],
        "format": fmt, "source": source, "tags": tags, "skip_invalid": skip_invalid,
        "score_name": score_name,
    }
    run_id = ids.run_id("import", config)
    result = ImportResult(run_id=run_id, files=[str(p) for p in paths], formats={})
    score_name = score_name or f"imported:{source}"
    if bulk and all(f.bulk_format for f in scanned):
        try:
            return _import_bulk(store, scanned, result, config, source, tags, score_name, max_record_bytes,
                                progress)
        except bulk_import.Declined:
            pass  # the exact lane below reads the files record by record

    with _gc_paused():
        good, bad, result.formats = parse_files(paths, fmt, max_record_bytes, progress, skip_oversized=skip_invalid)
    result.valid, result.rejected = len(good), len(bad)
    result.records = result.valid + result.rejected
    result.errors = [e.as_dict() for e in bad]

    if bad and not skip_invalid:
        raise _refusal(good, bad)
    if bad:
        result.rejects_path = str(_write_rejects(bad, rejects_path or default_rejects_path(store, source)))

    with _gc_paused():
        tables = _build_tables(good, run_id, source, tags, score_name)
    summary = {k: v for k, v in result.as_dict().items() if k not in {"errors", "run_id"}}

    def write(con) -> None:
        existing = queries.get_run(con, run_id)
        if existing is not None and existing["status"] == "completed":
            result.already_imported = True
            return
        if tables["rm"] is not None:
            _register_scorer(con, tables["rm"], run_id)
        result.new_prompts = queries.insert_new(con, "prompts", tables["prompts"])
        result.new_responses = queries.insert_new(con, "responses", tables["responses"])
        if tables["scores"].num_rows:
            result.new_scores = queries.insert_new(con, "scores", tables["scores"])
        if tables["pairs"].num_rows:
            result.new_pairs = queries.insert_new(con, "pairs", tables["pairs"])
        summary.update(new_prompts=result.new_prompts, new_responses=result.new_responses,
                       new_pairs=result.new_pairs, new_scores=result.new_scores)
        _complete_run(con, existing, run_id, config, summary)

    store.write(write)
    return result


def _check_arguments(paths: list[Path], fmt: str, source: str | None, score_name: str | None,
                     tags: Iterable[str]) -> None:
    """Refuse what names no readable file or no known format, and names that are not text."""
    if not paths:
        raise WorkbenchError("give at least one file to import")
    if fmt != "auto" and fmt not in FORMATS:
        raise WorkbenchError(f"unknown format '{fmt}'; choose auto or one of {', '.join(FORMATS)}")
    for path in paths:
        check_name_is_text(path, "file name")
        check_input_path(path)
    for what, text in (("source", source), ("score name", score_name), *(("tag", t) for t in tags)):
        check_name_is_text(text or "", what)


def _refusal(good: list, bad: list) -> InputError:
    """The one error for invalid records without --skip-invalid: their lines, the first one's reason."""
    lines = ", ".join(str(e.line) for e in bad[:MAX_ERRORS_SHOWN] if e.line is not None)
    more = f" and {len(bad) - MAX_ERRORS_SHOWN} more" if len(bad) > MAX_ERRORS_SHOWN else ""
    stopped = next((e for e in bad if isinstance(e, ReadingStopped)), None)
    if stopped is not None:
        more += f"; {stopped.file} was read no further than the record over the limit"
    valid = "valid" if stopped is not None else f"{len(good)} valid"
    return InputError(
        f"refused: {len(bad)} invalid record(s) (lines {lines}{more}); the store is unchanged. "
        f"First: {bad[0].describe()}. Fix them, or rerun with --skip-invalid to import the "
        f"{valid} records and list the rest in a rejects file"
    )


def _import_bulk(store: Store, scanned, result: ImportResult, config: dict, source: str, tags: list[str],
                 score_name: str, max_record_bytes: int, progress: bool) -> ImportResult:
    """The bulk lane (`workbench.ingest.bulk_import`) in one transaction; raises Declined to hand over."""
    result.formats = {str(f.path): f.bulk_format for f in scanned}

    def register_scorer(con) -> str:
        return _register_scorer(con, _external_scorer(score_name, source), result.run_id)

    def write(con) -> None:
        existing = queries.get_run(con, result.run_id)
        if existing is not None and existing["status"] == "completed":
            result.records = result.valid = json.loads(existing["summary"] or "{}").get("records", 0)
            result.already_imported = True
            return
        with tqdm(total=2, desc="bulk import: reading and checking", unit=" steps", disable=not progress) as bar:
            def step(description: str) -> None:
                bar.update(1)
                bar.set_description(f"bulk import: {description}")

            records, new = bulk_import.stage_and_insert(con, scanned, max_record_bytes, run_id=result.run_id,
                                                        source=source, tags=tags, register_scorer=register_scorer,
                                                        progress=step)
        result.records = result.valid = records
        result.new_prompts, result.new_responses, result.new_scores = new["prompts"], new["responses"], new["scores"]
        summary = {k: v for k, v in result.as_dict().items() if k not in {"errors", "run_id"}}
        summary["lane"] = "bulk"
        _complete_run(con, existing, result.run_id, config, summary)

    store.write(write)
    return result


def _external_scorer(score_name: str, source: str) -> dict:
    """The reward-model row that imported scores are filed under."""
    return {"rm_id": ids.external_scorer_id(score_name), "name": score_name,
            "config": {"external": True, "source": source}}


def _register_scorer(con, rm: dict, run_id: str) -> str:
    if queries.get_reward_model(con, rm["rm_id"]) is None:
        queries.insert_reward_model(con, rm["rm_id"], rm["name"], None, rm["config"], run_id)
    return rm["rm_id"]


def _complete_run(con, existing: dict | None, run_id: str, config: dict, summary: dict) -> None:
    if existing is None:
        queries.insert_run(con, run_id, "import", "completed", config, environment(), summary)
    else:  # an earlier attempt was recorded but not completed
        queries.finish_run(con, run_id, "completed", summary)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing allocates millions of small objects and no reference cycles: the cyclic garbage
    collector's passes over them cost up to half the parse time, and find nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _default_source(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return name or "import"


def parse_files(paths: Iterable[Path], fmt: str = "auto", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                progress: bool = True, skip_oversized: bool = False,
                ) -> tuple[list[_Located], list[InputError], dict[str, str]]:
    """Read and validate files without touching a store: valid records, errors, format per file.
    A record over the size limit ends the reading unless `skip_oversized` (see `iter_records`)."""
    good: list[_Located] = []
    bad: list[InputError] = []
    formats: dict[str, str] = {}
    for path in paths:
        formats[str(path)] = _read_file(Path(path), fmt, max_record_bytes, progress, good, bad, skip_oversized)
    return good, bad, formats


def _read_file(path, fmt, max_record_bytes, progress, good, bad, skip_oversized) -> str:
    file_format = None if fmt == "auto" else fmt
    pending: list[RawRecord] = []  # records read before the format was known
    errors_before = len(bad)
    records = iter_records(path, max_record_bytes, skip_oversized)
    bar = tqdm(records, desc=f"reading {path.name}", unit=" rec", disable=not progress, mininterval=0.5)
    try:
        for item in bar:
            if isinstance(item, InputError):
                bad.append(item)
                continue
            if file_format is None:
                file_format = detect_format(item.value)
                if file_format is None:
                    pending.append(item)
                    if len(pending) >= 100:
                        break
                    continue
            _parse_into(item, file_format, good, bad)
    except ReadingStopped as error:  # a record over the size limit: the errors so far are reported with it
        bad.append(error)
    bar.close()
    if file_format is None and len(bad) > errors_before and not pending:
        raise bad[errors_before]  # nothing readable to detect a format from: the first reason says why
    if file_format is None:
        raise InputError(
            "cannot detect the format from the first records; pass --format "
            f"({', '.join(FORMATS)})", file=str(path))
    for item in pending:
        _parse_into(item, file_format, good, bad)
    return file_format


def _parse_into(item: RawRecord, fmt: str, good: list, bad: list) -> None:
    try:
        good.append(_Located(item.file, item.line, parse_record(item.value, fmt)))
    except InputError as error:
        bad.append(error.located(item.file, item.line, item.unit))


def default_rejects_path(store: Store, source: str) -> Path:
    """Where `--skip-invalid` lists refused records unless told: SOURCE.rejects.jsonl beside the store
    (not the working directory: the store's folder is where the user looks for what an import left)."""
    return Path(store.path).resolve().parent / f"{source}.rejects.jsonl"


def _write_rejects(bad: list[InputError], rejects_path: str | Path) -> Path:
    path = Path(rejects_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for error in bad:
            f.write(orjson.dumps(error.as_dict()) + b"\n")
    return path


def _build_tables(good: list[_Located], run_id: str, source: str, tags: list[str], score_name: str) -> dict:
    """Columns for the new rows; within the import, the first line that has an id wins."""
    prompt_cols: dict[str, list] = {k: [] for k in ("prompt_id", "messages", "text", "tags", "source_line")}
    response_cols: dict[str, list] = {k: [] for k in ("response_id", "prompt_id", "text", "sample_index",
                                                      "n_chars", "source_line")}
    score_ids: list[str] = []
    score_values: list[float] = []
    pair_cols: dict[str, list] = {k: [] for k in ("pair_id", "prompt_id", "chosen_id", "rejected_id", "source_line")}
    seen_prompts: dict[str, str] = {}  # canonical messages -> id
    seen_responses: set[str] = set()
    seen_scores: set[str] = set()
    seen_pairs: set[str] = set()
    base_tags = sorted(set(tags))
    response_id = ids.imported_response_id
    for located in good:
        record, line = located.record, located.line
        canonical = ids.canonical_messages(record.prompt)
        pid = seen_prompts.get(canonical)
        if pid is None:
            pid = seen_prompts[canonical] = ids.prompt_id(record.prompt)
            prompt_cols["prompt_id"].append(pid)
            prompt_cols["messages"].append(canonical)
            prompt_cols["text"].append(_last_user_text(record.prompt))
            prompt_cols["tags"].append(sorted(set(base_tags).union(record.tags)) if record.tags else base_tags)
            prompt_cols["source_line"].append(line)
        texts = record.responses
        response_ids = [response_id(pid, text) for text in texts]
        if seen_responses.isdisjoint(response_ids) and len(set(response_ids)) == len(texts):
            seen_responses.update(response_ids)
            response_cols["response_id"] += response_ids
            response_cols["prompt_id"] += [pid] * len(texts)
            response_cols["text"] += texts
            response_cols["sample_index"] += range(len(texts))
            response_cols["n_chars"] += map(len, texts)
            response_cols["source_line"] += [line] * len(texts)
        else:  # a reply seen before in this import: keep its first occurrence only
            for index, (rid, text) in enumerate(zip(response_ids, texts)):
                if rid not in seen_responses:
                    seen_responses.add(rid)
                    for name, v in zip(("response_id", "prompt_id", "text", "sample_index", "n_chars", "source_line"),
                                       (rid, pid, text, index, len(text), line)):
                        response_cols[name].append(v)
        scores = record.scores
        if scores and None not in scores and seen_scores.isdisjoint(response_ids) and len(set(response_ids)) == len(texts):
            seen_scores.update(response_ids)
            score_ids += response_ids
            score_values += scores
        else:
            for rid, score in zip(response_ids, scores):
                if score is not None and rid not in seen_scores:
                    seen_scores.add(rid)
                    score_ids.append(rid)
                    score_values.append(score)
        if record.pair is not None:
            chosen, rejected = (response_ids[i] for i in record.pair)
            key = ids.pair_id(HUMAN, HUMAN, chosen, rejected)
            if key not in seen_pairs:
                seen_pairs.add(key)
                for name, v in zip(("pair_id", "prompt_id", "chosen_id", "rejected_id", "source_line"),
                                   (key, pid, chosen, rejected, line)):
                    pair_cols[name].append(v)
    scorer = _external_scorer(score_name, source)
    rm_id = scorer["rm_id"]
    n_prompts, n_responses, n_pairs = (len(prompt_cols["prompt_id"]), len(response_cols["response_id"]),
                                       len(pair_cols["pair_id"]))
    return {
        "prompts": _table(prompt_cols, source=(source, n_prompts), run_id=(run_id, n_prompts)),
        "responses": _table(response_cols, origin=("imported", n_responses), run_id=(run_id, n_responses)),
        "scores": pa.table({
            "response_id": pa.array(score_ids, pa.string()),
            "rm_id": pa.array([rm_id] * len(score_ids), pa.string()),
            "score": pa.array(score_values, pa.float64()),
            "run_id": pa.array([run_id] * len(score_ids), pa.string()),
        }),
        "pairs": _table(pair_cols, label_source=(HUMAN, n_pairs), strategy=(HUMAN, n_pairs),
                        params=("{}", n_pairs), run_id=(run_id, n_pairs)),
        "rm": scorer if score_ids else None,
    }


_TYPES = {"source_line": pa.int32(), "sample_index": pa.int32(), "n_chars": pa.int32()}


def _string_lists(lists: list[list[str]]) -> pa.Array:
    offsets = [0]
    for values in lists:
        offsets.append(offsets[-1] + len(values))
    flat = [v for values in lists for v in values]
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.string()))


def _table(columns: dict[str, list], **constants: tuple[str, int]) -> pa.Table:
    arrays = {name: _string_lists(values) if name == "tags" else pa.array(values, _TYPES.get(name, pa.string()))
              for name, values in columns.items()}
    for name, (value, n) in constants.items():
        arrays[name] = pa.array([value] * n, pa.string())
    return pa.table(arrays)


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return messages[-1]["content"]
