"""Hostile and broken import files, in every file type `workbench import` reads.

Each one must give a one-line `FILE[:LINE]: reason` from the CLI (run in-process, no traceback),
leave the store exactly as it was, and read in memory bounded by --max-record-bytes whatever the
file expands to (measured with ru_maxrss in a fresh process). Every file is generated here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import load_commands
from workbench.store import Store, queries

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("jsonl", "jsonl.gz", "json", "json.gz")
BINARY = ("parquet", "hf")
ALL = TEXT + BINARY
GOOD = {"prompt": "fine", "responses": ["a", "b"], "scores": [1.0, 0.0]}
WHERE = {"jsonl": ":2: ", "jsonl.gz": ":2: ", "json": " record 2: ", "json.gz": " record 2: ", "parquet": " row 2: ",
         "hf": " row 2: "}  # how the second record of each file type is named
LIMIT = 1 << 20


def write(tmp_path: Path, kind: str, records: list, texts: list[bytes] | None = None) -> Path:
    """`records` as a file of `kind`; for the text kinds, `texts` (one JSON text each) replaces their encoding."""
    path = tmp_path / f"in.{kind}"
    if kind in TEXT:
        texts = texts if texts is not None else [json.dumps(r).encode() for r in records]
        body = b"\n".join(texts) + b"\n" if kind.startswith("jsonl") else b"[" + b",\n".join(texts) + b"]"
        path.write_bytes(gzip.compress(body) if kind.endswith(".gz") else body)
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        from datasets import Dataset

        Dataset.from_list(records).save_to_disk(str(path))
    return path


def snapshot(db: Path) -> dict:
    """Row count and content hash of every table."""
    with Store(db).connect() as con:
        tables = [t for (t,) in queries.fetch_rows(con, "SELECT table_name FROM duckdb_tables() ORDER BY 1")]
        return {t: (queries.fetch_value(con, f'SELECT count(*) FROM "{t}"'),
                    hashlib.sha256(repr(queries.fetch_rows(con, f'SELECT * FROM "{t}" ORDER BY ALL')).encode()).hexdigest())
                for t in tables}


@pytest.fixture
def db(tmp_path) -> Path:
    """A store that already holds one import, so 'unchanged' means something."""
    db = tmp_path / "store.duckdb"
    seed = tmp_path / "seed"
    seed.mkdir()
    result = invoke(db, write(seed, "jsonl", [{"prompt": "seed", "chosen": "yes", "rejected": "no"}]))
    assert result.exit_code == 0, result.output
    return db


def invoke(db: Path, path: Path, *args: str):
    return CliRunner().invoke(load_commands(), ["--db", str(db), "-q", "import", str(path), *args])


def assert_refused(db: Path, path: Path, *fragments: str, args: tuple = ()) -> str:
    """The import is refused in one line naming the file and each fragment; the store is unchanged."""
    before = snapshot(db)
    result = invoke(db, path, "--max-record-bytes", str(LIMIT), *args)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.output
    assert str(path) in errors[0], errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert snapshot(db) == before
    return errors[0]


# --- scores: NaN, infinities, numbers beyond a double ----------------------------------------------

@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_refused_in_every_file_type(db, tmp_path, kind, bad):
    path = write(tmp_path, kind, [GOOD, {"prompt": "p", "responses": ["a", "b"], "scores": [0.5, bad]}])
    assert_refused(db, path, f"{WHERE[kind]}expected a finite number, got {bad!r}", "(field 'scores[1]')")


@pytest.mark.parametrize("kind", TEXT)
@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_beyond_a_double_are_refused_as_infinite_scores(db, tmp_path, kind, literal):
    texts = [json.dumps(GOOD).encode(), b'{"prompt": "p", "responses": ["a"], "scores": [%s]}' % literal.encode()]
    path = write(tmp_path, kind, [], texts)
    assert_refused(db, path, f"{WHERE[kind]}expected a finite number, got ", "inf (field 'scores[0]')")


# --- nesting ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TEXT)
@pytest.mark.parametrize("depth", [255, 300, 1000])
def test_deep_nesting_gives_a_located_reason_not_a_traceback(db, tmp_path, kind, depth):
    nested = b"[" * depth + b"]" * depth
    path = write(tmp_path, kind, [], [json.dumps(GOOD).encode(), nested])
    assert_refused(db, path, f"{WHERE[kind]}expected a JSON object, got list")
    path = write(tmp_path, kind, [], [json.dumps(GOOD).encode(), b'{"prompt": %s, "responses": ["a"]}' % nested])
    assert_refused(db, path, f"{WHERE[kind]}expected a message object, got list (field 'prompt[0]')")


@pytest.mark.parametrize("kind", TEXT)
def test_nesting_past_the_parsers_limit_is_invalid_json(db, tmp_path, kind):
    path = write(tmp_path, kind, [], [json.dumps(GOOD).encode(), b"[" * 5000 + b"]" * 5000])
    assert_refused(db, path, f"{WHERE[kind]}invalid JSON")


def test_a_whole_json_document_nested_300_deep(db, tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 300 + b"]" * 300)
    assert_refused(db, path, "cannot detect the format")
    assert_refused(db, path, " record 1: expected a JSON object, got list", args=("--format", "bon"))


# --- size: huge lines and records, gzip bombs --------------------------------------------------------

@pytest.mark.parametrize("kind", ALL)
def test_a_record_over_the_size_limit_is_refused(db, tmp_path, kind):
    huge = {"prompt": "p", "responses": ["x" * (3 * LIMIT)], "scores": [1.0]}
    unit = "row" if kind in BINARY else "record"
    # Parquet: the row group's metadata already shows more than the limit per row, before decoding
    where = ": rows 1 to 2 hold " if kind == "parquet" else f"{WHERE[kind]}{unit} is "
    message = assert_refused(db, write(tmp_path, kind, [GOOD, huge]), where, f"over the {LIMIT:,}-byte limit")
    if kind in TEXT:  # reading stops at the limit: the record's size is not known
        assert "the file was read no further" in message, message


@pytest.mark.parametrize("kind", ["json", "json.gz"])
def test_a_json_object_too_large_for_a_record_must_hold_an_array(db, tmp_path, kind):
    body = json.dumps({"data": "x" * (3 * LIMIT)}).encode()
    path = tmp_path / f"big.{kind}"
    path.write_bytes(gzip.compress(body) if kind.endswith(".gz") else body)
    assert_refused(db, path, "must hold an array of records")
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (3 * LIMIT)}]}).encode()
    path.write_bytes(gzip.compress(body) if kind.endswith(".gz") else body)
    assert_refused(db, path, " record 1: record is ", "over the")


_PEAK = """
import resource, sys
from workbench.errors import InputError
from workbench.ingest.importer import import_files
from workbench.store import Store
store = Store(sys.argv[1])
import_files(store, [sys.argv[2]], progress=False)  # warm up: modules, DuckDB, the store
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    import_files(store, [sys.argv[3]], max_record_bytes=int(sys.argv[4]), progress=False)
    print("IMPORTED")
except InputError as error:
    print("REFUSED", error)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
"""

EXPANDED = 120 << 20  # what each bomb expands to


def _bomb(tmp_path: Path, name: str, head: bytes, tail: bytes) -> Path:
    """A gzip file of head + 120 MB of one byte + tail, written in pieces (the test never holds it)."""
    path = tmp_path / name
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(head)
        for _ in range(EXPANDED >> 20):
            f.write(b"a" * (1 << 20))
        f.write(tail)
    return path


def _peak(tmp_path: Path, path: Path, warm_kind: str = "jsonl") -> tuple[str, int]:
    """(outcome, peak memory over a process that imported a small file of `warm_kind` first)."""
    warm = tmp_path / "warm"
    warm.mkdir(exist_ok=True)
    seed = write(warm, warm_kind, [{"prompt": "warm", "responses": ["up"]}])
    done = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "peak.duckdb"), str(seed), str(path),
                           str(LIMIT)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    return lines[0], int(lines[-1].split()[1]) * 1024


OVER = f"is over the {LIMIT:,}-byte limit; the file was read no further"


@pytest.mark.parametrize("name,head,tail,reason", [
    ("line.jsonl.gz", b'{"prompt": "', b'"}\n', f":1: record {OVER}"),
    ("no-newline.jsonl.gz", b"", b"", f":1: record {OVER}"),
    ("element.json.gz", b'[{"prompt": "', b'"}]', f" record 1: record {OVER}"),
    ("object.json.gz", b'{"data": "', b'"}', "must hold an array of records"),
    ("record.json.gz", b'{"prompt": "', b'"}', f" record 1: record {OVER}"),
    ("string.json.gz", b'["', b'"]', f" record 1: record {OVER}"),
])
def test_gzip_bombs_are_refused_in_memory_near_the_record_limit(tmp_path, name, head, tail, reason):
    path = _bomb(tmp_path, name, head, tail)
    assert path.stat().st_size < 200_000  # about 120 KB on disk
    outcome, peak = _peak(tmp_path, path)
    assert outcome.startswith("REFUSED") and reason in outcome, outcome
    assert peak < 4 * LIMIT + (16 << 20), f"peak {peak / 2 ** 20:.1f} MiB over the warmed-up process"


def test_with_skip_invalid_a_bomb_line_is_read_through_and_the_next_line_imported(tmp_path):
    path = _bomb(tmp_path, "line.jsonl.gz", b'{"prompt": "', b'"}\n' + json.dumps(GOOD).encode() + b"\n")
    db = tmp_path / "t.duckdb"
    result = invoke(db, path, "--max-record-bytes", str(LIMIT), "--skip-invalid", "--rejects",
                    str(tmp_path / "rejects.jsonl"))
    assert result.exit_code == 0, result.output
    assert "Imported 1 of 2 records" in result.output
    reject = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert reject["line"] == 1 and reject["reason"].startswith(f"record is 125,829,135 bytes, over the {LIMIT:,}")


@pytest.mark.parametrize("name", ["zero.jsonl", "zero.json", "zero.jsonl.gz", "zero.parquet"])
def test_an_endless_device_is_refused_at_once(db, tmp_path, name):
    """Issue 20.5: a symlink to /dev/zero was read for ever (122 GB in 30 s)."""
    path = tmp_path / name
    path.symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "workbench", "--db", str(db), "-q", "import", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and done.stderr.strip() == (f"Error: {path}: not a regular file or directory "
                                                            "(a device, pipe or socket): copy the data into a file "
                                                            "and import that"), done.stderr[-2000:]


def test_a_huge_plain_jsonl_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(json.dumps(GOOD).encode() + b'\n{"prompt": "')
        for _ in range(64):
            f.write(b"b" * (1 << 20))
        f.write(b'"}\n')
    outcome, peak = _peak(tmp_path, path)
    assert outcome.startswith("REFUSED") and f":2: record {OVER}" in outcome, outcome
    assert peak < 4 * LIMIT + (16 << 20), f"peak {peak / 2 ** 20:.1f} MiB over the warmed-up process"


def _parquet_bomb(tmp_path: Path, rows: int, at: int) -> Path:
    """A Parquet file of `rows` small rows, row `at` (0-based) holding 120 MB of one byte: a few KB on disk."""
    prompts = [f"p{i}" for i in range(rows)]
    prompts[at] = "a" * EXPANDED
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"prompt": prompts, "responses": [["x"]] * rows}), path, compression="zstd")
    return path


def test_a_parquet_row_too_large_for_its_metadata_is_refused_before_decoding(tmp_path):
    """Issue 20.9: a 10 KB Parquet file expanding to 300 MB peaked at 1.79 GB before it was refused."""
    path = _parquet_bomb(tmp_path, 1, 0)
    assert path.stat().st_size < 200_000
    outcome, peak = _peak(tmp_path, path, "parquet")
    assert outcome.startswith("REFUSED") and "bomb.parquet: rows 1 to 1 hold 125,829," in outcome, outcome
    assert f"bytes of uncompressed data, over the {LIMIT:,}-byte limit" in outcome, outcome
    assert peak < 4 * LIMIT + (16 << 20), f"peak {peak / 2 ** 20:.1f} MiB over the warmed-up process"


@pytest.mark.parametrize("kind", BINARY)
def test_a_huge_row_among_small_ones_is_refused_before_it_becomes_python_objects(tmp_path, kind):
    """Parquet has no per-row sizes: Arrow decodes the row once (a datasets file is mapped, not
    decoded), and its Arrow size refuses it before its Python and JSON copies are made."""
    if kind == "parquet":
        path = _parquet_bomb(tmp_path, 2000, 1000)
    else:
        rows = [{"prompt": f"p{i}", "responses": ["x"]} for i in range(2000)]
        rows[1000]["prompt"] = "a" * EXPANDED
        path = write(tmp_path, "hf", rows)
    outcome, peak = _peak(tmp_path, path, kind)
    assert outcome.startswith("REFUSED") and f" row 1001: row is over the {LIMIT:,}-byte limit: it holds 125,829," \
        in outcome, outcome
    bound = 4.5 * EXPANDED if kind == "parquet" else 4 * LIMIT + (32 << 20)  # was 6x and 3x EXPANDED
    assert peak < bound, f"peak {peak / 2 ** 20:.1f} MiB over the warmed-up process"


# --- broken containers: gzip, JSON documents, Parquet, datasets directories -------------------------

@pytest.mark.parametrize("kind", ["jsonl.gz", "json.gz"])
def test_corrupt_and_truncated_gzip(db, tmp_path, kind):
    data = gzip.compress(b"\n".join(json.dumps(GOOD | {"prompt": f"p{i}"}).encode() for i in range(2000)))
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[:len(data) // 2])
    assert_refused(db, path, "cannot read file")
    path.write_bytes(data[:20] + bytes(b ^ 0xFF for b in data[20:200]) + data[200:])
    assert_refused(db, path, "cannot read file")


@pytest.mark.parametrize("body,reason", [
    (b"", "the file is empty"),
    (b'[{"prompt": "p", "responses": ["a"]}, {"prompt": "q"', "ends inside a value (record 2)"),
    (b'[{"prompt": "p", "responses": ["a"]}] trailing', "more data after the document's value"),
    (b'[{"prompt": "p", "responses": ["a"]} {"prompt": "q"}]', "after record 1: expected ',' or ']'"),
    (b'"just a string"', "must hold a record, or an array of records"),
    (b'{"data": [{"prompt": "p", "responses": ["a"]}], "n": "' + b"x" * LIMIT + b'"}', "must hold nothing else"),
])
def test_broken_json_documents(db, tmp_path, body, reason):
    path = tmp_path / "doc.json"
    path.write_bytes(body)
    assert_refused(db, path, reason)


def _parquet(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    rows = [{"prompt": f"prompt {i}", "responses": [f"reply {i} " * 20, f"other {i}"], "scores": [float(i), 0.5]}
            for i in range(3000)]
    pq.write_table(pa.Table.from_pylist(rows), path, compression="none", row_group_size=1000)
    return path


def test_a_corrupt_parquet_data_page(db, tmp_path):
    path = _parquet(tmp_path)
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start:start + 4000] = os.urandom(4000)  # inside the data pages; the footer stays readable
    path.write_bytes(bytes(data))
    pq.ParquetFile(path)  # opens fine: the damage shows only while reading rows
    assert_refused(db, path, "not a readable Parquet file")


def test_a_truncated_parquet_file(db, tmp_path):
    path = _parquet(tmp_path)
    path.write_bytes(path.read_bytes()[:5000])
    assert_refused(db, path, "not a readable Parquet file")


def _saved(tmp_path: Path, splits: bool = False) -> Path:
    from datasets import Dataset, DatasetDict

    path = tmp_path / "saved"
    data = Dataset.from_list([GOOD, GOOD | {"prompt": "other"}])
    (DatasetDict({"train": data, "test": data}) if splits else data).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("damage", ["state.json garbage", "arrow file missing", "arrow file garbage",
                                    "split missing", "dataset_dict.json garbage", "no marker file"])
def test_odd_save_to_disk_directories(db, tmp_path, damage):
    path = _saved(tmp_path, splits=damage in ("split missing", "dataset_dict.json garbage"))
    arrow = sorted(path.rglob("*.arrow"))
    if damage == "state.json garbage":
        (path / "state.json").write_text("{not json")
    elif damage == "arrow file missing":
        arrow[0].unlink()
    elif damage == "arrow file garbage":
        arrow[0].write_bytes(b"\x00garbage" * 100)
    elif damage == "split missing":
        import shutil

        shutil.rmtree(path / "test")
    elif damage == "dataset_dict.json garbage":
        (path / "dataset_dict.json").write_text('{"splits": 3}')
    else:
        (path / "state.json").unlink()
    assert_refused(db, path, "datasets")


# --- text oddities: control characters, invalid UTF-8, duplicate keys --------------------------------

@pytest.mark.parametrize("kind", TEXT)
def test_raw_control_characters_and_invalid_utf8_are_refused(db, tmp_path, kind):
    raw = b'{"prompt": "a\x01b", "responses": ["x"]}'
    assert_refused(db, write(tmp_path, kind, [], [json.dumps(GOOD).encode(), raw]), f"{WHERE[kind]}invalid JSON")
    raw = b'{"prompt": "caf\xe9", "responses": ["x"]}'
    assert_refused(db, write(tmp_path, kind, [], [json.dumps(GOOD).encode(), raw]), f"{WHERE[kind]}invalid UTF-8")


def _stored_prompts(db: Path) -> list[str]:
    with Store(db).connect() as con:
        return [t for (t,) in queries.fetch_rows(con, "SELECT text FROM prompts ORDER BY 1")]


@pytest.mark.parametrize("kind", ALL)
def test_escaped_control_characters_are_text_stored_as_given(tmp_path, kind):
    prompt = "tab\there, vt\x0b, unit sep\x1f, nul\x00 end"
    db = tmp_path / "t.duckdb"
    result = invoke(db, write(tmp_path, kind, [GOOD, {"prompt": prompt, "responses": ["x"]}]))
    assert result.exit_code == 0, result.output
    assert _stored_prompts(db) == ["fine", prompt]


@pytest.mark.parametrize("kind", TEXT)
def test_duplicate_keys_take_the_last_value_in_every_text_type(tmp_path, kind):
    """As orjson, Python's json and the bulk lane's hand-over read them; documented in docs/importing.md."""
    db = tmp_path / "t.duckdb"
    texts = [json.dumps(GOOD).encode(), b'{"prompt": "first", "prompt": "last", "responses": ["x"]}']
    result = invoke(db, write(tmp_path, kind, [], texts))
    assert result.exit_code == 0, result.output
    assert _stored_prompts(db) == ["fine", "last"]


# --- what must still import -------------------------------------------------------------------------

def test_a_json_file_holding_one_messages_record_is_one_record(tmp_path):
    db = tmp_path / "t.duckdb"
    path = tmp_path / "one.json"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    path.write_text(json.dumps({"messages": messages}))
    result = invoke(db, path)
    assert result.exit_code == 0, result.output
    with Store(db).connect() as con:
        assert [json.loads(m) for (m,) in queries.fetch_rows(con, "SELECT messages FROM prompts")] == [messages]


@pytest.mark.parametrize("kind", ["json", "json.gz"])
def test_a_large_json_array_wrapped_in_an_object_streams_record_by_record(tmp_path, kind):
    records = [{"prompt": f"p{i}", "chosen": "yes " * 50, "rejected": f"no {i}"} for i in range(3000)]
    body = json.dumps({"data": records}).encode()
    assert len(body) > 200_000
    path = tmp_path / f"wrapped.{kind}"
    path.write_bytes(gzip.compress(body) if kind.endswith(".gz") else body)
    db = tmp_path / "t.duckdb"
    result = invoke(db, path, "--max-record-bytes", "100000")
    assert result.exit_code == 0, result.output
    with Store(db).connect() as con:
        assert queries.fetch_value(con, "SELECT count(*) FROM pairs") == 3000


@pytest.mark.parametrize("what", ["file name", "source", "tag"])
def test_names_that_are_not_utf8_are_one_clear_line(db, tmp_path, what):
    """A shell passes a name holding a byte that is not UTF-8 as a lone surrogate; it used to end
    in a UnicodeEncodeError traceback (found beside issue 20.13's export name)."""
    good = write(tmp_path, "jsonl", [GOOD])
    path = os.fsencode(tmp_path) + b"/bad\xff.jsonl" if what == "file name" else os.fsencode(good)
    if what == "file name":
        Path(os.fsdecode(path)).write_bytes(good.read_bytes())
    extra = {"file name": [], "source": [b"--source", b"src\xff"], "tag": [b"--tag", b"t\xff"]}[what]
    before = snapshot(db)
    done = subprocess.run([sys.executable, "-m", "workbench", "--db", str(db), "-q", "import", path, *extra],
                          capture_output=True, timeout=120, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    errors = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1 and len(errors) == 1, done.stderr.decode()[-2000:]
    assert errors[0].startswith(f"Error: the {what} ") and "\\udcff" in errors[0] and "is not valid text" in errors[0]
    assert snapshot(db) == before


def test_a_datasets_arrow_file_with_damaged_offsets_is_refused_in_one_line(db, tmp_path):
    """Found by tests/fuzz: one flipped byte in a `datasets` directory's Arrow file (a string offset)
    made pyarrow's to_pylist pass a negative size to Python: SystemError and a traceback."""
    path = write(tmp_path, "hf", [{"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.",
                                   "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 22, obviously."}])
    arrow = sorted(path.rglob("*.arrow"))[0]
    data = arrow.read_bytes()
    where = int(0.84375 * (len(data) - 1))  # the case the fuzzer found: inside the offsets of a string column
    arrow.write_bytes(data[:where] + bytes([data[where] ^ 0x5A]) + data[where + 1:])
    assert_refused(db, path, "cannot read the `datasets` directory", "offset")


def test_a_parquet_string_page_with_a_flipped_byte_is_refused_in_one_line(db, tmp_path):
    """Found by tests/fuzz: a flipped byte inside a Parquet string page left bytes that are not UTF-8,
    which pyarrow's to_pylist raised as UnicodeDecodeError, a traceback."""
    path = write(tmp_path, "parquet", [{"prompt": 0, "chosen": [{"role": "assistant", "content": "Blue."}],
                                        "rejected": "\x8000\x80\x80\U00010000"}])
    data = path.read_bytes()
    where = int(0.1953125 * (len(data) - 1))  # the case the fuzzer found
    path.write_bytes(data[:where] + bytes([data[where] ^ 0x5A]) + data[where + 1:])
    assert_refused(db, path, "not a readable Parquet file", "UTF8")
