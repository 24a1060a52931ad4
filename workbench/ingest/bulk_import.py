"""The bulk lane of `workbench import`: large, clean Best-of-N JSON Lines files, done by DuckDB.

`workbench.ingest.importer` tries this lane first for every import whose files are all plain JSON Lines
in the bon format (named with --format bon, or detected from the first line), and falls back to
its exact lane, which parses record by record in Python, whenever this one declines: a record
of another shape (message-list prompts, {text, score} responses), any value the exact lane would
refuse (it then names file, line and field), blank lines, gzip. Both lanes skip a UTF-8 byte-order
mark at the start of a file, and store the same rows for the same files, ids included
(`tests/workbench/test_bulk_import.py`).

What stays with DuckDB's JSON reader: it tolerates a trailing comma inside a field that the bon
format does not read; the exact lane refuses such a line as invalid JSON. (A NaN or Infinity
literal there is read by both lanes; in `scores` both refuse it.) In the fields it reads (prompt,
responses, scores, tags) the checks are exact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson

from workbench import ids
from workbench.ingest.formats import detect_format
from workbench.ingest.readers import UTF8_BOM
from workbench.store import bulk_import

BULK_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class ScannedFile:
    """What one pass over a file's bytes tells: its hash, and whether the bulk lane may take it."""

    path: Path
    sha256: str
    lines: int  # physical lines (a last line without a newline counts)
    bulk_format: str | None  # the format of its first record when the bulk lane can take the file


class Declined(Exception):
    """The bulk lane does not take this import; the exact lane does it instead."""


def scan(path: Path, fmt: str, max_record_bytes: int) -> ScannedFile:
    """Hash a file (for the run's provenance) and, on the way, see whether the bulk lane fits it."""
    digest = hashlib.sha256()
    if not path.is_file():
        return ScannedFile(path, ids.tree_hash(path), 0, None)
    # The exact lane refuses a line whose bytes, newline included, exceed the limit (CR LF: one
    # more). Lines stay below it if every stretch of `window` bytes holds a newline.
    window = max(1, (max_record_bytes - 2) // 2)
    lines, first, tail, short = 0, b"", 0, True
    with open(path, "rb") as f:
        while block := f.read(max(window, 1 << 22)):
            digest.update(block)
            if not first:
                first = block[:block.find(b"\n") + 1 or len(block)]
            lines += block.count(b"\n")  # blank lines: DuckDB skips them, so the counts then differ
            short = short and _lines_shorter_than(block, window, tail)
            last = block.rfind(b"\n")
            tail = tail + len(block) if last < 0 else len(block) - last - 1
    if tail:
        lines += 1  # a last line without a newline
    first = first.removeprefix(UTF8_BOM)  # DuckDB's reader skips a byte-order mark too
    eligible = (short and path.suffix.lower() in BULK_SUFFIXES and first.strip() != b""
                and _first_format(first, fmt) == "bon")
    return ScannedFile(path, digest.hexdigest(), lines, "bon" if eligible else None)


def _lines_shorter_than(block: bytes, window: int, tail: int) -> bool:
    """No line of `block` (the first continuing `tail` bytes before it) may reach 2 x window bytes."""
    first = block.find(b"\n")
    if first < 0:
        return tail + len(block) < window
    if tail + first >= window:
        return False
    return all(block.find(b"\n", start, start + window) >= 0 for start in range(first, len(block) - window, window))


def _first_format(line: bytes, fmt: str) -> str | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return fmt if fmt != "auto" else detect_format(value)


def stage_and_insert(con, files: list[ScannedFile], max_record_bytes: int, *, run_id: str, source: str,
                     tags: list[str], register_scorer, progress=lambda step: None) -> tuple[int, dict[str, int]]:
    """Inside the import's transaction: (records, new rows per table), or raise Declined."""
    try:  # `scan` saw every line well under the size limit; DuckDB's own limit is only a backstop
        records, bad, repeats, scored = bulk_import.stage(con, [(str(f.path), max_record_bytes) for f in files])
    except (duckdb.Error, UnicodeDecodeError) as error:
        # DuckDB quotes the offending bytes in some errors and can cut a UTF-8 character in half
        # there: its Python binding then raises UnicodeDecodeError instead (found by tests/fuzz)
        raise Declined(f"DuckDB could not read the files as bon records: {error}") from error
    if bad or records != sum(f.lines for f in files):
        raise Declined(f"{bad} record(s) need the exact lane's checks")
    progress(f"writing {records:,} records")
    rm_id = register_scorer(con) if scored else None
    counts = bulk_import.insert(con, run_id=run_id, source=source, tags=tags, rm_id=rm_id, repeats=repeats)
    progress("done")
    return records, counts
