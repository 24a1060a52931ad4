"""Read input files record by record, with the location of each record for error messages.

Supported: JSON Lines (`.jsonl`, `.ndjson`), JSON (`.json`: an array of records, an object
holding one such array, or JSON Lines with a .json name), Parquet, any of the text formats
gzipped (`.gz`), and a directory written by `datasets`' `save_to_disk` (a Dataset or a
DatasetDict, every split read in order).

A bad line (invalid UTF-8, invalid JSON, over the size limit) does not stop reading: it is
yielded as an `InputError` so the importer can refuse the file or skip the line.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from workbench.errors import InputError

DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024


@dataclass
class RawRecord:
    file: str
    line: int  # 1-based line (JSONL) or record/row number (JSON array, Parquet, datasets)
    value: Any
    unit: str = "line"


def iter_records(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord | InputError]:
    """Every record of a JSONL, JSON or Parquet file (gzipped too) or a `datasets` directory, each
    as a RawRecord located by line or row, or an InputError for a record that cannot be read."""
    path = Path(path)
    name = str(path)
    if path.is_dir():
        yield from _iter_hf_dataset(path, name, max_record_bytes)
        return
    if not path.exists():
        raise InputError("no such file", file=name)
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
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            if kind == ".json":
                data = f.read()
                yield from _iter_json_document(data, name, max_record_bytes)
            else:
                yield from _iter_jsonl(f, name, max_record_bytes)
    except (OSError, EOFError) as error:  # truncated or corrupt gzip stream
        raise InputError(f"cannot read file: {error}", file=name) from error


def _iter_jsonl(f: io.BufferedIOBase, name: str, max_bytes: int) -> Iterator[RawRecord | InputError]:
    for number, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        yield _parse_line(raw, name, number, max_bytes)


def _parse_line(raw: bytes, name: str, number: int, max_bytes: int, unit: str = "line") -> RawRecord | InputError:
    if len(raw) > max_bytes:
        return InputError(f"record is {len(raw):,} bytes, over the {max_bytes:,}-byte limit "
                          "(raise it with --max-record-bytes)", file=name, line=number, unit=unit)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return InputError(f"invalid UTF-8 at byte {error.start}", file=name, line=number, unit=unit)
    try:
        return RawRecord(name, number, orjson.loads(raw), unit)
    except orjson.JSONDecodeError as error:
        return InputError(f"invalid JSON: {error}", file=name, line=number, unit=unit)


def _iter_json_document(data: bytes, name: str, max_bytes: int) -> Iterator[RawRecord | InputError]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Many "JSON" datasets are JSON Lines with a .json name.
        if data.lstrip()[:1] == b"{" and b"\n" in data.strip():
            yield from _iter_jsonl(io.BytesIO(data), name, max_bytes)
            return
        error = _parse_line(data, name, 1, len(data) + 1)
        raise InputError(str(error.reason) if isinstance(error, InputError) else "invalid JSON", file=name)
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list)]
        records = lists[0] if len(document) == 1 and len(lists) == 1 else [document]
    elif isinstance(document, list):
        records = document
    else:
        raise InputError("a JSON file must hold a record, or an array of records", file=name)
    for number, value in enumerate(records, start=1):
        size = len(orjson.dumps(value))
        if size > max_bytes:
            yield InputError(f"record is {size:,} bytes, over the {max_bytes:,}-byte limit "
                             "(raise it with --max-record-bytes)", file=name, line=number, unit="record")
        else:
            yield RawRecord(name, number, value, "record")


def _iter_rows(batches, name: str, max_bytes: int, start: int = 1) -> Iterator[RawRecord | InputError]:
    number = start - 1
    for batch in batches:
        for value in batch.to_pylist():
            number += 1
            size = len(orjson.dumps(value, default=str))
            if size > max_bytes:
                yield InputError(f"row is {size:,} bytes, over the {max_bytes:,}-byte limit "
                                 "(raise it with --max-record-bytes)", file=name, line=number, unit="row")
            else:
                yield RawRecord(name, number, value, "row")


def _iter_parquet(path: Path, name: str, max_bytes: int) -> Iterator[RawRecord | InputError]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise InputError(f"not a readable Parquet file: {error}", file=name) from error
    yield from _iter_rows(parquet.iter_batches(batch_size=4096), name, max_bytes)


def _iter_hf_dataset(path: Path, name: str, max_bytes: int) -> Iterator[RawRecord | InputError]:
    if not ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        raise InputError("directory is not a `datasets` save_to_disk directory "
                         "(no dataset_dict.json or state.json)", file=name)
    from datasets import Dataset, load_from_disk

    loaded = load_from_disk(str(path))
    splits = [(None, loaded)] if isinstance(loaded, Dataset) else list(loaded.items())
    for split, dataset in splits:
        label = name if split is None else f"{name}[{split}]"
        yield from _iter_rows(dataset.data.to_batches(max_chunksize=4096), label, max_bytes)
