"""Read input files record by record, with the location of each record for error messages.

Supported: JSON Lines (`.jsonl`, `.ndjson`), JSON (`.json`: an array of records, an object
holding one such array, or JSON Lines with a .json name), Parquet, any of the text formats
gzipped (`.gz`), and a directory written by `datasets`' `save_to_disk` (a Dataset or a
DatasetDict, every split read in order).

A bad line (invalid UTF-8, invalid JSON) does not stop reading: it is yielded as an
`InputError` so the importer can refuse the file or skip the line. A text record over the size
limit stops the reading there (`ReadingStopped`), unless the caller skips such records. A file that
cannot be read as a whole (corrupt gzip or Parquet, a broken `datasets` directory, a JSON document
that ends early) raises `InputError` naming the file, and so does a path that is not a regular
file or directory (`/dev/zero`, a pipe). Text files are read in bounded memory
(`workbench.ingest.json_stream`): near `max_record_bytes` plus one chunk, whatever the file holds; a
leading UTF-8 byte-order mark is skipped. Parquet and `datasets` rows are measured in their Arrow
form before they become Python objects, and Parquet row groups from their metadata first.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from workbench.errors import InputError
from workbench.ingest.formats import detect_format
from workbench.ingest.json_stream import JsonScanner, OverLimit, Truncated, bounded_lines

DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024


@dataclass
class RawRecord:
    file: str
    line: int  # 1-based line (JSONL) or record/row number (JSON array, Parquet, datasets)
    value: Any
    unit: str = "line"


def check_input_path(path: Path) -> None:
    """Refuse a path that is neither a regular file nor a directory (symlinks followed): a device
    such as /dev/zero never ends, and a pipe cannot be read twice (once to hash, once to import)."""
    if not path.exists():
        raise InputError("no such file or directory", file=str(path))
    if not (path.is_file() or path.is_dir()):
        raise InputError("not a regular file or directory (a device, pipe or socket): copy the data into a "
                         "file and import that", file=str(path))


def iter_records(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 skip_oversized: bool = False) -> Iterator[RawRecord | InputError]:
    """Every record of a JSONL, JSON or Parquet file (gzipped too) or a `datasets` directory, each
    as a RawRecord located by line or row, or an InputError for a record that cannot be read.

    A text record over `max_record_bytes` is read no further than the limit and raises
    ReadingStopped (the rest of the file is not read: a line from an endless source has no end),
    unless `skip_oversized`: then it is read through, without being kept, to go on with the next
    record (`--skip-invalid`; the file's size bounds the work).
    """
    path = Path(path)
    name = str(path)
    check_input_path(path)
    if path.is_dir():
        yield from _iter_hf_dataset(path, name, max_record_bytes)
        return
    suffixes = [s.lower() for s in path.suffixes]
    compressed = suffixes[-1:] == [".gz"]
    kind = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind == ".parquet":
        yield from _iter_parquet(path, name, max_record_bytes)
        return
    if kind not in {".jsonl", ".ndjson", ".json", ".txt"}:
        raise InputError(
            f"unknown file type '{''.join(path.suffixes)}': use .jsonl, .json, .parquet (optionally .gz) "
            "or a datasets directory", file=name)
    try:
        if kind == ".json":
            yield from _iter_json_document(lambda: _open_text(path, compressed), name, max_record_bytes,
                                           skip_oversized)
        else:
            with _open_text(path, compressed) as f:
                yield from _iter_jsonl(f, name, max_record_bytes, skip_oversized)
    except (OSError, EOFError, zlib.error) as error:  # truncated or corrupt gzip stream
        raise InputError(f"cannot read file: {error}", file=name) from error


UTF8_BOM = b"\xef\xbb\xbf"


def _open_text(path: Path, compressed: bool):
    """The file (decompressed) for reading bytes, past a UTF-8 byte-order mark if it starts with one:
    Windows tools write one, and it is no part of the first record."""
    f = gzip.open(path, "rb") if compressed else open(path, "rb")
    if f.read(len(UTF8_BOM)) != UTF8_BOM:
        f.seek(0)
    return f


def _iter_jsonl(f, name: str, max_bytes: int, skip_oversized: bool) -> Iterator[RawRecord | InputError]:
    for number, raw, size in bounded_lines(f, max_bytes, stop_when_over=not skip_oversized):
        if raw is None:
            if not skip_oversized:
                raise _over_limit(max_bytes, name, number, "line")
            yield _too_large(size, max_bytes, name, number, "line")
        elif raw.strip():
            yield _parse_line(raw, name, number, max_bytes)


def _too_large(size: int, max_bytes: int, name: str, number: int, unit: str) -> InputError:
    return InputError(f"record is {size:,} bytes, over the {max_bytes:,}-byte limit "
                      "(raise it with --max-record-bytes)", file=name, line=number, unit=unit)


class ReadingStopped(InputError):
    """A record passed the size limit and the file was read no further."""


def _over_limit(max_bytes: int, name: str, number: int, unit: str, stopped: bool = True) -> InputError:
    """A record over the limit whose size is not known: reading stopped inside it, or skipped it."""
    if not stopped:
        return InputError(f"record is over the {max_bytes:,}-byte limit (raise it with --max-record-bytes)",
                          file=name, line=number, unit=unit)
    return ReadingStopped(f"record is over the {max_bytes:,}-byte limit; the file was read no further (raise the "
                          "limit with --max-record-bytes, or pass --skip-invalid to skip the record)",
                          file=name, line=number, unit=unit)


def _parse_line(raw: bytes, name: str, number: int, max_bytes: int, unit: str = "line") -> RawRecord | InputError:
    if len(raw) > max_bytes:
        return _too_large(len(raw), max_bytes, name, number, unit)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return InputError(f"invalid UTF-8 at byte {error.start}", file=name, line=number, unit=unit)
    try:
        return RawRecord(name, number, orjson.loads(raw), unit)
    except orjson.JSONDecodeError as error:
        value = _with_non_finite_numbers(raw)
        if value is not None:  # the format then refuses a non-finite score, naming its field
            return RawRecord(name, number, value, unit)
        return InputError(f"invalid JSON: {error}", file=name, line=number, unit=unit)


def _with_non_finite_numbers(raw: bytes):
    """The value of a line that is valid JSON but for NaN, Infinity or a number beyond a double
    (1e400), which orjson refuses; None when anything else is wrong with it."""
    seen = []

    def number(text: str, integer: bool = False):
        if integer and -2 ** 63 <= (value := int(text)) < 2 ** 64:
            return value
        value = float(text)  # as orjson reads numbers: integers past 64 bits become floats
        if math.isinf(value):
            seen.append(text)
        return value

    def constant(text: str) -> float:
        seen.append(text)
        return float(text)

    try:
        value = json.loads(raw, parse_float=number, parse_int=lambda t: number(t, True), parse_constant=constant)
        orjson.dumps(value)  # refuses what orjson would refuse besides those numbers: lone surrogates
    except (ValueError, RecursionError, TypeError):
        return None
    return value if seen else None


RECORD_KEYS = {"prompt", "messages", "chosen", "rejected", "responses"}


def _iter_json_document(reopen: Callable, name: str, max_bytes: int,
                        skip_oversized: bool) -> Iterator[RawRecord | InputError]:
    """A JSON file: an array of records, one record, or an object holding one array of records
    (a record itself, like {"messages": [...]}, is one record). Scanned in bounded memory.

    Many "JSON" datasets are JSON Lines with a .json name: a file whose first line is a whole JSON
    value with more lines after it is read line by line, so a bad line (`null`, a number, a cut
    record) is refused by its line number and --skip-invalid can skip it (found by tests/fuzz)."""
    if _first_line_is_a_value_and_more_follow(reopen, max_bytes):
        with reopen() as f:
            yield from _iter_jsonl(f, name, max_bytes, skip_oversized)
        return
    with reopen() as f:
        scanner = JsonScanner(f)
        first = scanner.peek()
        if first == ord("["):
            yield from _json_array(scanner, name, max_bytes, skip_oversized)
            _expect_end(scanner, name)
            return
        if first != ord("{"):
            raise InputError("a JSON file must hold a record, or an array of records"
                             if first is not None else "the file is empty", file=name)
        try:
            data, _ = _scan(scanner, max_bytes, name, stop_when_over=not skip_oversized)
            after = scanner.peek()
        except OverLimit:
            data, after = None, None
    if after is not None:  # a first object over several lines with more after it: JSON Lines too
        with reopen() as f:
            yield from _iter_jsonl(f, name, max_bytes, skip_oversized)
        return
    if data is None:  # too large for one record: it can only be {"key": [records...]}
        with reopen() as f:
            yield from _json_wrapped_array(JsonScanner(f), name, max_bytes, skip_oversized)
        return
    item = _parse_line(data, name, 1, max_bytes, "record")
    if isinstance(item, RawRecord) and _is_wrapper(item.value):
        for number, value in enumerate(next(iter(item.value.values())), start=1):
            yield RawRecord(name, number, value, "record")
    else:
        yield item


def _first_line_is_a_value_and_more_follow(reopen: Callable, max_bytes: int) -> bool:
    """Whether the first non-blank line holds one whole JSON value and a non-blank line follows it
    (reads two lines at most, each stopped at the limit)."""
    with reopen() as f:
        lines = (raw for _, raw, _ in bounded_lines(f, max_bytes, stop_when_over=True) if raw is None or raw.strip())
        first = next(lines, None)  # None: no line, or the first is over the limit
        if first is None:
            return False
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            if _with_non_finite_numbers(first) is None:
                return False
        return any(True for _ in lines)  # stops at the next line, whatever it holds


def _is_wrapper(value) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list)
            and detect_format(value) is None)


def _scan(scanner: JsonScanner, limit: int, name: str, after: str = "",
          stop_when_over: bool = False) -> tuple[bytes | None, int]:
    try:
        return scanner.value(limit, stop_when_over)
    except Truncated:
        raise InputError(f"invalid JSON: the file ends inside a value{after} (is it cut short?)", file=name) from None


def _json_array(scanner: JsonScanner, name: str, max_bytes: int,
                skip_oversized: bool) -> Iterator[RawRecord | InputError]:
    scanner.take()  # [
    if scanner.peek() == ord("]"):
        scanner.take()
        return
    number = 0
    while True:
        number += 1
        try:
            data, size = _scan(scanner, max_bytes, name, f" (record {number})", stop_when_over=not skip_oversized)
        except OverLimit:
            raise _over_limit(max_bytes, name, number, "record") from None
        yield _too_large(size, max_bytes, name, number, "record") if data is None else \
            _parse_line(data, name, number, max_bytes, "record")
        separator = scanner.peek()
        scanner.take()
        if separator == ord("]"):
            return
        if separator != ord(","):
            raise InputError(f"invalid JSON after record {number}: expected ',' or ']'", file=name)


def _json_wrapped_array(scanner: JsonScanner, name: str, max_bytes: int,
                        skip_oversized: bool) -> Iterator[RawRecord | InputError]:
    scanner.peek()
    scanner.take()  # {
    try:
        key, _ = _scan(scanner, max_bytes, name, stop_when_over=True)
    except OverLimit:
        key = None
    key = orjson.loads(key) if key is not None and scanner.peek() == ord(":") else None
    if key in RECORD_KEYS:  # a record, not a wrapper
        yield _over_limit(max_bytes, name, 1, "record", stopped=not skip_oversized)
        return
    scanner.take()
    if not isinstance(key, str) or scanner.peek() != ord("["):
        raise InputError(f"the JSON object is over the {max_bytes:,}-byte record limit; a JSON file that large "
                         "must hold an array of records, or an object holding only one", file=name)
    yield from _json_array(scanner, name, max_bytes, skip_oversized)
    if scanner.peek() != ord("}"):
        raise InputError("a JSON object holding an array of records must hold nothing else", file=name)
    scanner.take()
    _expect_end(scanner, name)


def _expect_end(scanner: JsonScanner, name: str) -> None:
    if scanner.peek() is not None:
        raise InputError("invalid JSON: more data after the document's value", file=name)


ROWS_PER_BATCH = 4096


def _iter_rows(batches, name: str, max_bytes: int, start: int = 1) -> Iterator[RawRecord | InputError]:
    number = start - 1
    for batch in batches:
        # Arrow trusts the offsets and UTF-8 of a file it maps; a damaged `datasets` Arrow file made
        # to_pylist() pass a negative size to Python (SystemError, found by tests/fuzz). Checked first:
        # ArrowInvalid then names the damage.
        batch.validate(full=True)
        # A row's Arrow data is measured before it becomes Python objects (several times its size):
        # a row over the limit is refused at the cost of its Arrow form only.
        rows = range(batch.num_rows) if batch.nbytes > max_bytes else None
        values = batch.to_pylist() if rows is None else (batch.slice(i, 1) for i in rows)
        for value in values:
            number += 1
            if rows is not None:
                if value.nbytes > max_bytes:
                    yield InputError(f"row is over the {max_bytes:,}-byte limit: it holds {value.nbytes:,} bytes "
                                     "of data (raise it with --max-record-bytes)", file=name, line=number, unit="row")
                    continue
                value = value.to_pylist()[0]
            try:
                size = len(orjson.dumps(value, default=str))
            except orjson.JSONEncodeError as error:  # e.g. nested deeper than orjson writes
                yield InputError(f"cannot read the row: {error}", file=name, line=number, unit="row")
                continue
            if size > max_bytes:
                yield InputError(f"row is {size:,} bytes, over the {max_bytes:,}-byte limit "
                                 "(raise it with --max-record-bytes)", file=name, line=number, unit="row")
            else:
                yield RawRecord(name, number, value, "row")


def _iter_parquet(path: Path, name: str, max_bytes: int) -> Iterator[RawRecord | InputError]:
    """Row group by row group, in batches sized from the metadata to hold about `max_bytes` each;
    a row group too large for its rows is refused from the metadata, before anything is decoded
    (a 10 KB file can hold 300 MB of one repeated byte)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise InputError(f"not a readable Parquet file: {error}", file=name) from error
    first = 1
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        rows, size = group.num_rows, max(group.total_byte_size, 0)
        if size > max_bytes * max(rows, 1):
            raise InputError(f"rows {first:,} to {first + rows - 1:,} hold {size:,} bytes of uncompressed data, over "
                             f"the {max_bytes:,}-byte limit for each row on average (raise it with "
                             "--max-record-bytes)", file=name, unit="row")
        first += rows

    def batches():
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            per_row = max(group.total_byte_size, 0) // max(group.num_rows, 1)
            batch_size = max(1, min(ROWS_PER_BATCH, max_bytes // max(per_row, 1)))
            yield from parquet.iter_batches(batch_size=batch_size, row_groups=[index])

    yield from _guarded(_iter_rows(batches(), name, max_bytes), name, "not a readable Parquet file")


def _guarded(rows: Iterator[RawRecord | InputError], name: str, what: str) -> Iterator[RawRecord | InputError]:
    """`rows`, with a failure while reading them (a corrupt data page, a missing file) as InputError."""
    import pyarrow as pa

    try:
        yield from rows
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{what}: {error}", file=name) from error


def _iter_hf_dataset(path: Path, name: str, max_bytes: int) -> Iterator[RawRecord | InputError]:
    if not ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        raise InputError("directory is not a `datasets` save_to_disk directory "
                         "(no dataset_dict.json or state.json)", file=name)
    from datasets import Dataset, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except Exception as error:  # datasets raises many types for a broken directory; all are the user's to fix
        raise InputError(f"cannot load the `datasets` directory: {type(error).__name__}: {error}",
                         file=name) from error
    splits = [(None, loaded)] if isinstance(loaded, Dataset) else list(loaded.items())
    for split, dataset in splits:
        label = name if split is None else f"{name}[{split}]"
        yield from _guarded(_iter_rows(dataset.data.to_batches(max_chunksize=ROWS_PER_BATCH), label, max_bytes), label,
                            "cannot read the `datasets` directory")
