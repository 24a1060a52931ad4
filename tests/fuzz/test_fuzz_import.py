"""Fuzz `workbench import` with mutated real records of every format and file type.

Each case writes mutated records (`tests/fuzz/import_cases.py`) as a file, imports it with the
real CLI (in-process, into a copy of a store that already holds one import) and checks:
- the outcome is success, or exit 1 with exactly one line `Error: ...`: never a traceback;
- a refusal leaves every table as it was (row counts and content hashes);
- a success adds exactly the rows the records hold (when they were written cleanly, the oracle is
  the format's parser applied to the known values) and, for Best-of-N JSON Lines, the bulk lane
  (DuckDB) stores what the exact lane (Python) stores;
- memory stays bounded (the process's peak RSS grows by less than `MEMORY_BOUND` over the run).

Run: `WORKBENCH_FUZZ_EXAMPLES=10000 pytest -m fuzz tests/fuzz/test_fuzz_import.py` (docs/fuzzing.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.import_cases import (FORMATS, TEXT_KINDS, byte_mutations, encode_text, expected_import,
                                     mutated_record, write_columnar_file, write_text_file)
from cli import load_commands
from workbench.ingest.importer import import_files
from workbench.store import Store, queries

EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "20"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
MEMORY_BOUND = 512 << 20
LIMITS = [4 * 1024 * 1024, 2000, 300]  # the default, and small ones that long records pass
SOURCE = "fuzz"
LINE_KINDS = ("jsonl", "ndjson", "jsonl.gz", "json-lines-named-json")


@dataclass
class Template:
    """A store holding one unrelated import (so that 'unchanged' and 'added' mean something), copied
    for each case, with its snapshot and rows taken once."""

    path: Path
    snapshot: dict
    rows: dict


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Template:
    folder = tmp_path_factory.mktemp("template")
    seed = folder / "seed.jsonl"
    seed.write_text(json.dumps({"prompt": "seed prompt", "chosen": "seed yes", "rejected": "seed no"}) + "\n")
    store = Store(folder / "template.duckdb")
    import_files(store, [seed], progress=False)
    return Template(store.path, snapshot(store.path), stored_rows(store.path))


def snapshot(db: Path) -> dict:
    """Row count and content hash of every table."""
    with Store(db).connect() as con:
        tables = [t for (t,) in queries.fetch_rows(con, "SELECT table_name FROM duckdb_tables() ORDER BY 1")]
        return {t: (queries.fetch_value(con, f'SELECT count(*) FROM "{t}"'),
                    hashlib.sha256(repr(queries.fetch_rows(con, f'SELECT * FROM "{t}" ORDER BY ALL')).encode()).hexdigest())
                for t in tables}


def stored_rows(db: Path) -> dict[str, set]:
    """Prompts, replies, pairs and scores as texts (what an import's rows mean)."""
    with Store(db).connect() as con:
        def rows(sql: str) -> set:
            return set(queries.fetch_rows(con, sql))
        return {
            "prompts": {m for (m,) in rows("SELECT messages FROM prompts")},
            "responses": rows("SELECT p.messages, r.text FROM responses r JOIN prompts p USING (prompt_id)"),
            "pairs": rows("SELECT p.messages, c.text, r.text FROM pairs x JOIN prompts p USING (prompt_id) "
                          "JOIN responses c ON c.response_id = x.chosen_id "
                          "JOIN responses r ON r.response_id = x.rejected_id"),
            "scores": rows("SELECT p.messages, r.text, s.score FROM scores s JOIN responses r USING (response_id) "
                           "JOIN prompts p USING (prompt_id)"),
        }


def lane_dump(db: Path) -> dict:
    tables = {"prompts": "prompt_id, messages, text, source, tags, source_line",
              "responses": "response_id, prompt_id, text, origin, sample_index, n_chars, source_line",
              "scores": "response_id, rm_id, score"}
    with Store(db).connect() as con:
        return {t: queries.fetch_rows(con, f"SELECT {cols} FROM {t} ORDER BY ALL") for t, cols in tables.items()}


def run_import(db: Path, path: Path, fmt: str, skip_invalid: bool, limit: int, folder: Path):
    args = ["--db", str(db), "-q", "import", str(path), "--format", fmt, "--source", SOURCE,
            "--max-record-bytes", str(limit), "--json"]
    if skip_invalid:
        args += ["--skip-invalid", "--rejects", str(folder / "rejects.jsonl")]
    return CliRunner().invoke(load_commands(), args)


def check_outcome(result, db: Path, before: dict) -> dict | None:
    """The invariant every case keeps; the import's JSON result on success, None on refusal."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"crashed: {type(result.exception).__name__}: {result.exception}\n{result.output[-3000:]}"
    assert "Traceback" not in result.output, result.output[-3000:]
    if result.exit_code != 0:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output[-3000:]
        assert snapshot(db) == before, "a refused import changed the store"
        return None
    return json.loads(result.output)


def log_case(target: str, imported: dict | None) -> None:
    """With WORKBENCH_FUZZ_LOG set, one line per finished case (to count the cases of a long run)."""
    if os.environ.get("WORKBENCH_FUZZ_LOG"):
        with open(os.environ["WORKBENCH_FUZZ_LOG"], "a") as f:
            f.write(f"{target} {'refused' if imported is None else 'imported'}\n")


def check_memory(start_kb: int) -> None:
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb) * 1024
    assert grown < MEMORY_BOUND, f"peak memory grew by {grown / 2 ** 20:.0f} MiB"


def clean_oracle_applies(values: list, body: bytes, kind: str) -> bool:
    """Whether a JSON reader reads the encoded values back as they are (no NaN, no lone surrogate,
    no integer beyond 64 bits): only then are the values themselves the oracle."""
    try:
        decoded = [orjson.loads(line) for line in body.splitlines()] if kind in LINE_KINDS else orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if kind == "json-wrapped":
        decoded = decoded["data"]
    try:  # an integer past 64 bits reads back as an equal float (2**70 == 2.0**70), which orjson cannot dump
        return decoded == values and orjson.dumps(decoded) == orjson.dumps(values)
    except TypeError:
        return False


def check_rows(db: Path, before_rows: dict, imported: dict, values: list, fmt: str, limit: int,
               skip_invalid: bool, line_kind: bool) -> None:
    """A successful import of cleanly written values added exactly the rows its records hold."""
    expected = expected_import(values, fmt, limit, unit_overhead=1 if line_kind else 0)
    if expected.fmt is None or (expected.bad and not skip_invalid):
        raise AssertionError(f"imported, but the oracle refuses it: {expected.bad} bad, format {expected.fmt}")
    assert imported["valid"] == len(expected.good) and imported["rejected"] == expected.bad, (imported, expected)
    after, wanted = stored_rows(db), expected.rows()
    for table, rows in wanted.items():
        assert after[table] == before_rows[table] | rows, (table, after[table] ^ (before_rows[table] | rows))


@st.composite
def text_case(draw):
    fmt = draw(st.sampled_from(FORMATS))
    values = draw(st.lists(mutated_record(fmt), min_size=1, max_size=6))
    kind = draw(st.sampled_from(TEXT_KINDS))
    body = encode_text(values, kind)
    mutated, ops = draw(byte_mutations(body))
    named = draw(st.sampled_from(["auto", fmt, fmt, "auto", *FORMATS]))
    return values, kind, body, mutated, ops, named, draw(st.booleans()), draw(st.sampled_from(LIMITS))


@pytest.mark.fuzz
@FUZZ
@given(case=text_case())
def test_fuzz_import_text_files(template, case):
    values, kind, body, mutated, ops, fmt, skip_invalid, limit = case
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "store.duckdb"
        shutil.copy(template.path, db)
        path = write_text_file(folder, mutated, kind, cut_gzip="cut-gzip" in ops)
        imported = check_outcome(run_import(db, path, fmt, skip_invalid, limit, folder), db, template.snapshot)
        clean = not ops and mutated == body and clean_oracle_applies(values, body, kind)
        line_kind = kind in LINE_KINDS
        if clean:
            expected = expected_import(values, fmt, limit, unit_overhead=1 if line_kind else 0)
            should_refuse = expected.fmt is None or (expected.bad > 0 and not skip_invalid)
            assert (imported is None) == should_refuse, (imported, expected.bad, expected.fmt)
        if imported is not None and clean:
            check_rows(db, template.rows, imported, values, fmt, limit, skip_invalid, line_kind)
        if kind in ("jsonl", "ndjson") and fmt in ("auto", "bon"):
            _check_lanes_agree(folder, template.path, path, fmt, skip_invalid, limit)
    check_memory(start)
    log_case("text", imported)


def _check_lanes_agree(folder: Path, template: Path, path: Path, fmt: str, skip_invalid: bool, limit: int) -> None:
    """The bulk lane (tried first) and the exact lane alone give the same outcome and rows."""
    outcomes = []
    for bulk in (True, False):
        db = folder / f"lane-{bulk}.duckdb"
        shutil.copy(template, db)
        try:
            import_files(Store(db), [path], fmt=fmt, source=SOURCE, skip_invalid=skip_invalid,
                         rejects_path=folder / f"rejects-{bulk}.jsonl", max_record_bytes=limit, progress=False,
                         bulk=bulk)
            error = None
        except Exception as caught:  # compared below: both lanes must raise the same user error
            error = f"{type(caught).__name__}: {caught}"
        outcomes.append((error, lane_dump(db)))
    assert outcomes[0] == outcomes[1], (outcomes[0][0], outcomes[1][0])


@st.composite
def columnar_case(draw):
    fmt = draw(st.sampled_from(FORMATS))
    values = draw(st.lists(mutated_record(fmt), min_size=1, max_size=5))
    kind = draw(st.sampled_from(["parquet", "parquet", "parquet", "hf"]))
    damage = draw(st.sampled_from([None, None, None, "flip", "cut"]))
    at = draw(st.floats(0, 1))
    return fmt, values, kind, damage, at, draw(st.sampled_from(["auto", fmt, *FORMATS])), draw(st.booleans())


@pytest.mark.fuzz
@FUZZ
@given(case=columnar_case())
def test_fuzz_import_parquet_and_datasets_dirs(template, case):
    fmt, values, kind, damage, at, named, skip_invalid = case
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_columnar_file(folder, values, kind)
        if path is None:  # Arrow cannot give these values one type: no file to import
            log_case("untypable", None)
            return
        arrow_files = [path] if kind == "parquet" else sorted(path.rglob("*.arrow"))
        if damage is not None and arrow_files:  # (a dataset without columns has no Arrow file)
            target = arrow_files[0]
            data = target.read_bytes()
            where = int(at * (len(data) - 1))
            target.write_bytes(data[:where] + bytes([data[where] ^ 0x5A]) + data[where + 1:] if damage == "flip"
                               else data[:where])
        db = folder / "store.duckdb"
        shutil.copy(template.path, db)
        imported = check_outcome(run_import(db, path, named, skip_invalid, LIMITS[0], folder), db, template.snapshot)
        if imported is not None and damage is None:
            import pyarrow as pa

            rows = pa.Table.from_pylist(values).to_pylist()  # what a row reads as: missing keys are None
            check_rows(db, template.rows, imported, rows, named, LIMITS[0], skip_invalid, line_kind=False)
    check_memory(start)
    log_case(kind, imported)
